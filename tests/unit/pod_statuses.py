"""Ray pods as the API server returns them, with the status the kubelet (containerStatuses,
initContainerStatuses) and the scheduler (PodScheduled) write: KubeRay 1.5's labels and
containers, kubelet 1.34's waiting reasons and messages, kube-scheduler 1.34's message."""
from __future__ import annotations

import copy
from typing import Any

CLUSTER = "bf-ray"
T = "2026-03-01T12:00:05Z"


def _pod(name: str, group: str, node_type: str, node_label: str, container: str, image: str) -> dict[str, Any]:
    init = [] if node_type == "head" else [{
        "name": "wait-gcs-ready", "image": image, "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/bash", "-lc", "--"], "args": ["until ray health-check --address bf-ray-head-svc.ns.svc.cluster.local:6379; do sleep 5; done"],
    }]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "resourceVersion": "4711",
            "generateName": name.rsplit("-", 1)[0] + "-",
            "labels": {
                "app.kubernetes.io/created-by": "kuberay-operator",
                "app.kubernetes.io/managed-by": "geneva-operator",
                "app.kubernetes.io/name": "kuberay",
                "ray.io/cluster": CLUSTER,
                "ray.io/group": group,
                "ray.io/identifier": f"{CLUSTER}-{node_type}",
                "ray.io/is-ray-node": "yes",
                "ray.io/node-type": node_type,
            },
            "ownerReferences": [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": CLUSTER, "uid": "rc-uid",
                                 "controller": True, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kuberay-operator", "operation": "Update"}],
        },
        "spec": {
            "nodeSelector": {node_label: "true"},
            "serviceAccountName": "geneva-ray-runner",
            "initContainers": init,
            "containers": [{"name": container, "image": image, "imagePullPolicy": "IfNotPresent",
                            "resources": {"limits": {"cpu": "1", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "2Gi"}},
                            "volumeMounts": [{"name": "shared-mem", "mountPath": "/dev/shm"}]}],
            "volumes": [{"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}],
            "schedulerName": "default-scheduler",
        },
        "status": {"phase": "Pending", "qosClass": "Guaranteed"},
    }


def head(image: str = "ghcr.io/lancedb/geneva-ray-worker:0.1.0") -> dict[str, Any]:
    return _pod(f"{CLUSTER}-head-7xk2p", "headgroup", "head", "geneva.lancedb.com/ray-head", "ray-head", image)


def worker(group: str = "cpu", suffix: str = "q8v4n", image: str = "ghcr.io/lancedb/geneva-ray-worker:0.1.0",
           node_label: str = "geneva.lancedb.com/ray-worker-cpu") -> dict[str, Any]:
    return _pod(f"{CLUSTER}-{group}-worker-{suffix}", group, "worker", node_label, "ray-worker", image)


def _scheduled(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None, "lastTransitionTime": T},
        {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": T},
        {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "lastProbeTime": None, "lastTransitionTime": T,
         "message": f"containers with unready status: [{pod['spec']['containers'][0]['name']}]"},
        {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "lastProbeTime": None, "lastTransitionTime": T,
         "message": f"containers with unready status: [{pod['spec']['containers'][0]['name']}]"},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": T},
    ]


def _container_status(name: str, image: str, waiting: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0, "started": False,
            "lastState": {}, "state": {"waiting": waiting},
            "volumeMounts": [{"name": "shared-mem", "mountPath": "/dev/shm"}]}


def image_waiting(pod: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
    """The pod scheduled and its image not to be had: on a worker the init container (same
    image) waits first, and the main container waits for it (PodInitializing)."""
    pod = copy.deepcopy(pod)
    image = pod["spec"]["containers"][0]["image"]
    main = pod["spec"]["containers"][0]["name"]
    status = pod["status"]
    status.update(hostIP="198.18.0.1", hostIPs=[{"ip": "198.18.0.1"}], podIP="198.18.1.7", podIPs=[{"ip": "198.18.1.7"}],
                  startTime=T, conditions=_scheduled(pod))
    waiting = {"reason": reason, "message": message}
    if pod["spec"]["initContainers"]:
        status["conditions"][1] = {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized",
                                   "message": "containers with incomplete status: [wait-gcs-ready]",
                                   "lastProbeTime": None, "lastTransitionTime": T}
        status["initContainerStatuses"] = [_container_status("wait-gcs-ready", image, waiting)]
        status["containerStatuses"] = [_container_status(main, image, {"reason": "PodInitializing"})]
    else:
        status["containerStatuses"] = [_container_status(main, image, waiting)]
    return pod


def never_pulled(pod: dict[str, Any]) -> dict[str, Any]:
    image = pod["spec"]["containers"][0]["image"]
    return image_waiting(pod, "ErrImageNeverPull", f'Container image "{image}" is not present with pull policy of Never')


def pull_backoff(pod: dict[str, Any]) -> dict[str, Any]:
    image = pod["spec"]["containers"][0]["image"]
    return image_waiting(pod, "ImagePullBackOff", f'Back-off pulling image "{image}": ErrImagePull: failed to pull and unpack '
                         f'image "docker.io/{image}": failed to resolve reference "docker.io/{image}": '
                         f'docker.io/{image}: not found')


def invalid_name(pod: dict[str, Any]) -> dict[str, Any]:
    image = pod["spec"]["containers"][0]["image"]
    return image_waiting(pod, "InvalidImageName", f'Failed to apply default image tag "{image}": couldn\'t parse image '
                         f'name "{image}": invalid reference format: repository name must be lowercase')


SCHEDULER_MESSAGE = ("0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes "
                     "are available: 4 Preemption is not helpful for scheduling.")


def unschedulable(pod: dict[str, Any], message: str = SCHEDULER_MESSAGE) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                                    "lastProbeTime": None, "lastTransitionTime": T}]
    return pod


def creating(pod: dict[str, Any]) -> dict[str, Any]:
    """Scheduled, its image being pulled: nothing wrong yet."""
    return image_waiting(pod, "ContainerCreating", "")


def running(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    pod["status"] = {"phase": "Running", "qosClass": "Guaranteed", "startTime": T, "conditions": [
        {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": T}
        for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]}
    pod["status"]["containerStatuses"] = [{
        "name": pod["spec"]["containers"][0]["name"], "image": pod["spec"]["containers"][0]["image"], "ready": True,
        "restartCount": 0, "started": True, "state": {"running": {"startedAt": T}}, "lastState": {}}]
    return pod
