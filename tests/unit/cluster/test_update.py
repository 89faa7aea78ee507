"""What a spec change does to a live RayCluster: patch in place, or recreate later."""
from __future__ import annotations

import copy

from geneva_operator.api.models import BackfillSpec
from geneva_operator.cluster import SPEC_HASH_ANNOTATION, build_ray_cluster, in_place_patch, needs_recreate

OWNER = {"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill", "name": "embed", "uid": "u"}
GROUPS = [
    {"name": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 8},
    {"name": "gpu", "type": "gpu", "gpu": 1, "replicas": 0, "maxReplicas": 2},
]


def desired(autoscaling: bool = False, groups: list | None = None, **cluster) -> dict:
    raw = {
        "table": {"uri": "/db", "name": "t"},
        "column": "c",
        "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32"},
        "cluster": {"workerGroups": groups or GROUPS, "autoscaling": {"enabled": autoscaling}, **cluster},
    }
    spec = BackfillSpec.model_validate(raw)
    return build_ray_cluster(name="embed-ray", namespace="ns", owner=OWNER, spec=spec)


def live(manifest: dict) -> dict:
    """The object as the API server returns it: metadata, status and KubeRay CRD defaults added."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].update(resourceVersion="4711", uid="rc-uid", generation=1)
    obj["status"] = {"state": "ready"}
    for pod in [obj["spec"]["headGroupSpec"]["template"]] + [g["template"] for g in obj["spec"]["workerGroupSpecs"]]:
        for port in pod["spec"]["containers"][0].get("ports", []):
            port["protocol"] = "TCP"
    for group in obj["spec"]["workerGroupSpecs"]:
        group["numOfHosts"] = 1
    return obj


def scaled(**changes) -> list:
    groups = copy.deepcopy(GROUPS)
    groups[0].update(changes)
    return groups


def test_an_unchanged_spec_needs_nothing_despite_server_defaults():
    current = live(desired())
    assert in_place_patch(current, desired()) is None
    assert needs_recreate(current, desired()) == []


def test_replicas_and_bounds_are_patched_in_place_keeping_server_fields():
    current = live(desired())
    patch = in_place_patch(current, desired(groups=scaled(replicas=4, minReplicas=2, maxReplicas=10)))
    cpu, gpu = patch["spec"]["workerGroupSpecs"]
    assert (cpu["groupName"], cpu["replicas"], cpu["minReplicas"], cpu["maxReplicas"]) == ("cpu", 4, 2, 10)
    assert cpu["numOfHosts"] == 1 and cpu["template"] == current["spec"]["workerGroupSpecs"][0]["template"]
    assert gpu == current["spec"]["workerGroupSpecs"][1]
    assert patch["metadata"] == {"resourceVersion": "4711"}
    assert needs_recreate(current, desired(groups=scaled(replicas=4, minReplicas=2, maxReplicas=10))) == []


def test_with_the_autoscaler_on_replicas_belong_to_it():
    current = live(desired(autoscaling=True))
    current["spec"]["workerGroupSpecs"][0]["replicas"] = 6  # the autoscaler scaled up
    assert in_place_patch(current, desired(autoscaling=True)) is None
    patch = in_place_patch(current, desired(autoscaling=True, groups=scaled(maxReplicas=12)))
    cpu = patch["spec"]["workerGroupSpecs"][0]
    assert (cpu["replicas"], cpu["maxReplicas"]) == (6, 12)


def test_the_idle_timeout_is_patched_in_place():
    current = live(desired(autoscaling=True))
    new = desired(autoscaling=True)
    new["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] = 600
    assert in_place_patch(current, new)["spec"] == {"autoscalerOptions": {"idleTimeoutSeconds": 600}}
    assert needs_recreate(current, new) == []


def test_image_resources_and_version_changes_need_a_recreate_and_are_named():
    current = live(desired())
    new = desired(image="registry/ray:2.61.0", rayVersion="2.61.0", head={"cpu": "2"})
    paths = needs_recreate(current, new)
    assert "spec.rayVersion" in paths
    assert "spec.headGroupSpec.template.spec.containers[0].image" in paths
    assert "spec.headGroupSpec.template.spec.containers[0].resources.limits.cpu" in paths
    assert "spec.workerGroupSpecs[gpu].template.spec.containers[0].image" in paths
    assert in_place_patch(current, new) is None


def test_worker_group_changes_are_named_by_group():
    current = live(desired())
    groups = copy.deepcopy(GROUPS)
    groups[1]["gpu"] = 2
    assert needs_recreate(current, desired(groups=groups)) == [
        "spec.workerGroupSpecs[gpu].rayStartParams.num-gpus",
        "spec.workerGroupSpecs[gpu].template.spec.containers[0].resources.requests.nvidia.com/gpu",
        "spec.workerGroupSpecs[gpu].template.spec.containers[0].resources.limits.nvidia.com/gpu",
    ]


def test_adding_or_removing_a_group_is_a_recreate():
    current = live(desired())
    fewer = desired(groups=[GROUPS[0]])
    assert needs_recreate(current, fewer) == ["spec.workerGroupSpecs[gpu]"]
    assert in_place_patch(current, fewer) is None


def test_turning_the_autoscaler_on_is_a_recreate():
    # KubeRay injects the autoscaler sidecar when it creates the head pod.
    paths = needs_recreate(live(desired()), desired(autoscaling=True))
    assert "spec.enableInTreeAutoscaling" in paths


def test_a_removed_map_entry_shows_as_a_spec_hash_change():
    current = live(desired(nodeSelector={"zone": "a"}))
    assert needs_recreate(current, desired()) == [f"metadata.annotations[{SPEC_HASH_ANNOTATION}]"]


def test_in_place_and_recreate_changes_together_give_both():
    current = live(desired())
    new = desired(image="other:1", groups=scaled(replicas=5))
    assert in_place_patch(current, new)["spec"]["workerGroupSpecs"][0]["replicas"] == 5
    assert "spec.headGroupSpec.template.spec.containers[0].image" in needs_recreate(current, new)
