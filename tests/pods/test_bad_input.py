"""Bad input on real pods gets a clear status, never a hang: what KubeRay's users meet as
clusters "stuck Initializing" (KubeRay issues #1990, #2182) names its cause here.

* an image the node does not have and cannot pull (every registry resolves to a closed
  loopback port on this node): the image in the ClusterReady condition, then Failed with
  reason ImagePullFailed at startupDeadlineSeconds;
* a worker group whose node label no node carries: the label as the reason its pods are
  unschedulable, then Failed with reason Unschedulable;
* an image with Ray but without the backfill engine: Failed at once, EngineNotInImage, the
  image named, no retries that cannot help.
"""

from __future__ import annotations

from tests.cluster.operator_fixtures import conditions, phase

from realpods import BUCKET, make_table, put_ray_base_on_node, readme_example, wait_for

DEADLINE = 60  # startupDeadlineSeconds of these backfills


def _get(k, ns, name):
    return k.kubectl_json("get", "genevabackfill", name, "-n", ns)


def _cluster_ready(obj) -> dict:
    return conditions(obj).get("ClusterReady") or {}


def test_an_image_that_is_not_on_the_node_fails_with_the_image_named(pods_cluster, operator_release, s3,
                                                                    user_namespace):
    ns, k = user_namespace, pods_cluster
    uri = f"s3://{BUCKET}/{ns}"
    make_table(s3, uri, rows=1000, fragments=1)
    image = "ghcr.io/lancedb/geneva-ray-worker:0.0.0-not-built"
    manifest = readme_example(ns, s3, uri, startupDeadlineSeconds=DEADLINE)
    manifest["spec"]["cluster"]["image"] = image
    name = manifest["metadata"]["name"]
    k.apply(manifest)

    waiting = wait_for("ClusterReady names the image", lambda: (lambda c: c if c.get("reason") == "ImagePullFailed"
                                                                 else None)(_cluster_ready(_get(k, ns, name))),
                       DEADLINE + 60, k, ns, operator_release)
    assert image in waiting["message"], waiting
    assert _get(k, ns, name)["status"]["phase"] == "Provisioning"
    failed = wait_for("Failed at the startup deadline", lambda: (lambda b: b if phase(b) == "Failed" else None)(
        _get(k, ns, name)), DEADLINE + 120, k, ns, operator_release)
    status = failed["status"]
    assert status["reason"] == "ImagePullFailed", status
    assert image in status["message"] and "spec.startupDeadlineSeconds" in status["message"], status["message"]
    assert status.get("attempts", 0) == 0  # no job was ever submitted


def test_a_group_no_node_takes_shows_its_label_as_the_reason(pods_cluster, operator_release, s3, user_namespace):
    ns, k = user_namespace, pods_cluster
    uri = f"s3://{BUCKET}/{ns}"
    make_table(s3, uri, rows=1000, fragments=1)
    manifest = readme_example(ns, s3, uri, startupDeadlineSeconds=DEADLINE)
    # This node is labelled for the head and CPU workers only: nothing takes a GPU group.
    manifest["spec"]["cluster"]["workerGroups"] = [
        {"name": "gpu", "type": "gpu", "gpu": 1, "cpu": "500m", "memory": "1Gi",
         "replicas": 1, "minReplicas": 0, "maxReplicas": 1}]
    name = manifest["metadata"]["name"]
    k.apply(manifest)

    waiting = wait_for("ClusterReady says the pods are unschedulable",
                       lambda: (lambda c: c if c.get("reason") == "Unschedulable" else None)(
                           _cluster_ready(_get(k, ns, name))), DEADLINE + 60, k, ns, operator_release)
    assert "geneva.lancedb.com/ray-worker-gpu" in waiting["message"] and "gpu" in waiting["message"], waiting
    failed = wait_for("Failed at the startup deadline", lambda: (lambda b: b if phase(b) == "Failed" else None)(
        _get(k, ns, name)), DEADLINE + 240, k, ns, operator_release)
    assert failed["status"]["reason"] == "Unschedulable", failed["status"]
    assert "geneva.lancedb.com/ray-worker-gpu" in failed["status"]["message"]


def test_an_image_without_the_engine_fails_fast_naming_the_image(pods_cluster, operator_release, s3, user_namespace,
                                                                 tmp_path):
    RAY_BASE_IMAGE = put_ray_base_on_node(pods_cluster, tmp_path)
    ns, k = user_namespace, pods_cluster
    uri = f"s3://{BUCKET}/{ns}"
    make_table(s3, uri, rows=1000, fragments=1)
    manifest = readme_example(ns, s3, uri, backoffLimit=3)
    manifest["spec"]["cluster"]["image"] = RAY_BASE_IMAGE
    manifest["spec"]["cluster"]["workerGroups"] = [
        {"name": "cpu", "type": "cpu", "cpu": "500m", "memory": "1536Mi", "replicas": 1, "minReplicas": 0,
         "maxReplicas": 1}]
    name = manifest["metadata"]["name"]
    k.apply(manifest)

    failed = wait_for("Failed", lambda: (lambda b: b if phase(b) == "Failed" else None)(_get(k, ns, name)),
                      600, k, ns, operator_release)
    status = failed["status"]
    assert status["reason"] == "EngineNotInImage", status
    assert RAY_BASE_IMAGE in status["message"] and "geneva_operator" in status["message"], status["message"]
    assert status["attempts"] == 1  # backoffLimit 3, but a retry cannot help: none was made
