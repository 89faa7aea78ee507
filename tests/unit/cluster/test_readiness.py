"""When a RayCluster can take a job, as each KubeRay reports it: conditions from 1.3 (1.2 behind a
feature gate), only `status.state` before, and the head pod as the index holds it."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
import pod_statuses as ps  # noqa: E402

from geneva_operator.cluster.kuberay_features import KubeRayFeatures, unreadable  # noqa: E402
from geneva_operator.cluster.pods import slim_pod  # noqa: E402
from geneva_operator.cluster.readiness import head_image, ray_cluster_ready  # noqa: E402

KUBERAY_1_1 = KubeRayFeatures(version="1.1")
KUBERAY_1_2 = KubeRayFeatures(status_conditions=True, version="1.2")
KUBERAY_1_6 = KubeRayFeatures(status_conditions=True, gcs_fault_tolerance_options=True, autoscaler_version=True,
                              auth_options=True, upgrade_strategy=True, version="1.6")
T = "2026-03-01T12:00:05Z"


def cluster(**status) -> dict:
    return {"metadata": {"name": "bf-ray"}, "spec": {"headGroupSpec": {"template": {"spec": {"containers": [
        {"name": "ray-head", "image": "ray:2.60"}]}}}}, "status": status}


def condition(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": T}


READY_CONDITIONS = [condition("HeadPodReady", "True", "HeadPodRunningAndReady"),
                    condition("RayClusterProvisioned", "True", "AllPodRunningAndReadyFirstTime")]
HEAD = slim_pod(ps.running(ps.head()))
WORKER = slim_pod(ps.running(ps.worker()))


def not_ready(pod: dict) -> dict:
    """A pod whose container restarted: Running, not Ready (what a crashed head looks like)."""
    pod = copy.deepcopy(pod)
    pod["status"]["conditions"] = [c if c["type"] != "Ready" else {**c, "status": "False"} for c in pod["status"]["conditions"]]
    return pod


def test_head_pod_ready_condition_decides_wherever_kuberay_writes_it():
    for features in (KUBERAY_1_2, KUBERAY_1_6, unreadable("403")):
        assert ray_cluster_ready(cluster(state="ready", conditions=READY_CONDITIONS), features, [HEAD]) == (True, "")
    # it follows the head pod both ways, whatever `state` (sticky) says
    down = [condition("HeadPodReady", "False", "ContainersNotReady", "containers with unready status: [ray-head]"),
            READY_CONDITIONS[1]]
    assert ray_cluster_ready(cluster(state="ready", conditions=down), KUBERAY_1_6, [HEAD]) == (
        False, "head pod not ready: ContainersNotReady: containers with unready status: [ray-head]")


def test_a_replica_failure_says_why_pods_could_not_be_made():
    failed = [condition("HeadPodReady", "False", "HeadPodNotFound"),
              condition("RayClusterReplicaFailure", "True", "FailedCreateHeadPod", 'pods "bf-ray-head" is forbidden: quota')]
    assert ray_cluster_ready(cluster(conditions=failed), KUBERAY_1_6) == (
        False, 'FailedCreateHeadPod: pods "bf-ray-head" is forbidden: quota')


def test_a_kuberay_that_writes_conditions_has_not_seen_a_cluster_without_status():
    ready, message = ray_cluster_ready(cluster(), KUBERAY_1_6, [HEAD])
    assert not ready and "HeadPodReady" in message


def test_kuberay_with_its_condition_gate_off_falls_back_to_state_and_head_pod():
    # KubeRay >= 1.3 with RayClusterStatusConditions disabled writes `state` but no conditions
    assert ray_cluster_ready(cluster(state="ready"), KUBERAY_1_6, [HEAD, WORKER]) == (True, "")


def test_before_conditions_state_ready_and_a_ready_head_pod_make_a_ready_cluster():
    for features in (KUBERAY_1_1, KUBERAY_1_2, unreadable("403")):
        assert ray_cluster_ready(cluster(state="ready", availableWorkerReplicas=1), features, [WORKER, HEAD]) == (True, "")


def test_before_conditions_a_sticky_ready_state_does_not_hide_a_head_pod_that_is_down():
    ready, message = ray_cluster_ready(cluster(state="ready"), KUBERAY_1_1, [not_ready(HEAD), WORKER])
    assert not ready and message == f"RayCluster state ready, but head pod {HEAD['metadata']['name']} is not Ready"
    ready, message = ray_cluster_ready(cluster(state="ready"), KUBERAY_1_1, [WORKER])
    assert not ready and "head pod is not there" in message


def test_before_conditions_other_states_are_not_ready():
    assert ray_cluster_ready(cluster(), KUBERAY_1_1, [HEAD]) == (False, "RayCluster state unknown")
    assert ray_cluster_ready(cluster(state="unhealthy"), KUBERAY_1_1, [HEAD]) == (False, "RayCluster state unhealthy")
    assert ray_cluster_ready(cluster(state="failed", reason="admission webhook denied the pod"), KUBERAY_1_1, [HEAD]) == (
        False, "RayCluster failed: admission webhook denied the pod")


def test_a_cluster_being_deleted_is_never_ready():
    obj = cluster(state="ready", conditions=READY_CONDITIONS)
    obj["metadata"]["deletionTimestamp"] = T
    assert ray_cluster_ready(obj, KUBERAY_1_6, [HEAD]) == (False, "RayCluster is being deleted")


def test_head_image():
    assert head_image(cluster()) == "ray:2.60"
    assert head_image({"spec": {}}) is None
