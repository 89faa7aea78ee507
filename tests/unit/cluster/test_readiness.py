"""Reading a RayCluster's readiness from what KubeRay writes on it."""
import pytest

from geneva_operator.cluster.readiness import head_image, ray_cluster_ready


@pytest.mark.parametrize(
    "obj,ready",
    [
        ({"status": {"conditions": [{"type": "HeadPodReady", "status": "True"}]}}, True),
        ({"status": {"state": "ready", "conditions": [{"type": "HeadPodReady", "status": "False"}]}}, False),
        ({"status": {"state": "ready"}}, True),
        ({"status": {}}, False),
        ({"metadata": {"deletionTimestamp": "x"}, "status": {"state": "ready"}}, False),
        ({"status": {"conditions": [{"type": "RayClusterReplicaFailure", "status": "True", "reason": "FailedCreateHeadPod"}]}}, False),
    ],
)
def test_ray_cluster_readiness(obj, ready):
    assert ray_cluster_ready(obj)[0] is ready


def test_head_image_is_the_first_container_of_the_head_group():
    obj = {"spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"image": "ray:1"}, {"image": "side:2"}]}}}}}
    assert head_image(obj) == "ray:1"
    assert head_image({"spec": {}}) is None
