"""What RayCluster a GenevaBackfill gets: the builder's contract, one behaviour per test."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

import geneva_operator

from geneva_operator.api.models import BackfillSpec
from geneva_operator.cluster import SPEC_HASH_ANNOTATION, build_ray_cluster, token_secret_ref
from geneva_operator.cluster.kuberay_features import KubeRayFeatures
from geneva_operator.cluster.raycluster import UnsupportedByKubeRay
from geneva_operator.settings import DEFAULT_RAY_IMAGE, ClusterSettings

REPO = Path(__file__).resolve().parents[3]

OWNER = {"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill", "name": "embed", "uid": "0b6e-uid"}
BASE = {
    "table": {"uri": "s3://bucket/db", "name": "captions"},
    "column": "caption_len",
    "udf": {"function": "my_udfs.text:length", "inputColumns": ["caption"], "outputType": "int32"},
    "cluster": {
        "workerGroups": [
            {"name": "cpu", "type": "cpu", "replicas": 2, "minReplicas": 1, "maxReplicas": 8, "cpu": "4", "memory": "8Gi"},
            {"name": "gpu", "type": "gpu", "replicas": 0, "maxReplicas": 2, "cpu": "8", "memory": "16Gi", "gpu": 2},
        ]
    },
}


def make_spec(auth: dict | None = None, **cluster_changes) -> BackfillSpec:
    raw = copy.deepcopy(BASE)
    raw["cluster"].update(cluster_changes)
    if auth is not None:
        raw["auth"] = auth
    return BackfillSpec.model_validate(raw)


def build(spec: BackfillSpec | None = None, settings: ClusterSettings | None = None, **cluster_changes) -> dict:
    spec = spec or make_spec(**cluster_changes)
    return build_ray_cluster(name="embed-ray", namespace="geneva", owner=OWNER, spec=spec, settings=settings)


def head_pod(rc: dict) -> dict:
    return rc["spec"]["headGroupSpec"]["template"]


def worker_group(rc: dict, name: str) -> dict:
    [group] = [g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == name]
    return group


def pods(rc: dict) -> list[dict]:
    return [head_pod(rc)] + [g["template"] for g in rc["spec"]["workerGroupSpecs"]]


def containers(rc: dict) -> list[dict]:
    return [c for pod in pods(rc) for c in pod["spec"]["containers"]]


def test_it_is_a_ray_io_v1_raycluster_named_and_namespaced_as_asked():
    rc = build()
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rc["metadata"]["name"], rc["metadata"]["namespace"]) == ("embed-ray", "geneva")
    assert rc["spec"]["rayVersion"] == "2.60.0"


def test_the_backfill_controls_the_cluster_so_deleting_it_deletes_the_cluster():
    [ref] = build()["metadata"]["ownerReferences"]
    assert ref == {**OWNER, "controller": True, "blockOwnerDeletion": True}


def test_an_owner_without_uid_is_refused():
    with pytest.raises(ValueError, match="uid"):
        build_ray_cluster(name="x", namespace="n", owner={**OWNER, "uid": ""}, spec=make_spec())


def test_a_backfill_on_an_existing_cluster_builds_nothing():
    raw = copy.deepcopy(BASE)
    del raw["cluster"]
    raw["existingCluster"] = {"name": "shared"}
    with pytest.raises(ValueError, match="existingCluster"):
        build(BackfillSpec.model_validate(raw))


def test_head_runs_on_head_nodes_and_does_no_work():
    rc = build(nodeSelector={"topology.kubernetes.io/zone": "us-east-1a"})
    head = rc["spec"]["headGroupSpec"]
    assert head["template"]["spec"]["nodeSelector"] == {
        "geneva.lancedb.com/ray-head": "true",
        "topology.kubernetes.io/zone": "us-east-1a",
    }
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"


def test_head_exposes_gcs_dashboard_and_client_ports_under_kuberays_names():
    [container] = head_pod(build())["spec"]["containers"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"gcs-server": 6379, "dashboard": 8265, "client": 10001}


def test_user_start_params_cannot_make_the_head_take_work():
    rc = build(head={"rayStartParams": {"num-cpus": "4", "object-store-memory": "1000000000"}})
    params = rc["spec"]["headGroupSpec"]["rayStartParams"]
    assert params["num-cpus"] == "0" and params["object-store-memory"] == "1000000000"


def test_requests_equal_limits_for_every_container():
    rc = build(head={"cpu": "2", "memory": "4Gi"})
    [head] = head_pod(rc)["spec"]["containers"]
    assert head["resources"] == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}}
    for c in containers(rc):
        assert c["resources"]["requests"] == c["resources"]["limits"]


def test_cpu_groups_land_on_cpu_nodes_without_gpus():
    group = worker_group(build(), "cpu")
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"geneva.lancedb.com/ray-worker-cpu": "true"}
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "4", "memory": "8Gi"}
    assert "num-gpus" not in group["rayStartParams"]
    assert "tolerations" not in pod


def test_gpu_groups_land_on_gpu_nodes_with_gpu_limits():
    group = worker_group(build(), "gpu")
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"geneva.lancedb.com/ray-worker-gpu": "true"}
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "8", "memory": "16Gi", "nvidia.com/gpu": 2}
    assert group["rayStartParams"]["num-gpus"] == "2"


def test_gpu_groups_tolerate_the_gpu_taint_unless_the_operator_says_not_to():
    gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert worker_group(build(), "gpu")["template"]["spec"]["tolerations"] == [gpu_taint]
    off = build(settings=ClusterSettings(gpu_toleration=False))
    assert "tolerations" not in worker_group(off, "gpu")["template"]["spec"]


def test_user_tolerations_go_everywhere_and_the_gpu_one_is_not_doubled():
    gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    spot = {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    rc = build(tolerations=[spot, gpu_taint])
    for pod in pods(rc):
        assert pod["spec"]["tolerations"] == [spot, gpu_taint]


def test_group_label_wins_over_a_conflicting_extra_selector():
    rc = build(nodeSelector={"geneva.lancedb.com/ray-worker-cpu": "false"})
    assert worker_group(rc, "cpu")["template"]["spec"]["nodeSelector"]["geneva.lancedb.com/ray-worker-cpu"] == "true"


def test_worker_groups_carry_replicas_and_bounds():
    group = worker_group(build(), "cpu")
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (2, 1, 8)


def test_pods_use_the_service_account_pull_settings_and_priority():
    rc = build(
        serviceAccountName="runner",
        imagePullPolicy="Always",
        imagePullSecrets=[{"name": "registry"}],
        priorityClassName="batch-low",
        image="registry.example/ray:2.60.0-geneva",
    )
    for pod in pods(rc):
        spec = pod["spec"]
        assert spec["serviceAccountName"] == "runner"
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert spec["priorityClassName"] == "batch-low"
        assert spec["containers"][0]["imagePullPolicy"] == "Always"
        assert spec["containers"][0]["image"] == "registry.example/ray:2.60.0-geneva"


def test_without_an_image_every_ray_container_runs_the_operators_default():
    for pod in pods(build()):
        assert pod["spec"]["containers"][0]["image"] == DEFAULT_RAY_IMAGE
    for pod in pods(build(settings=ClusterSettings(default_ray_image="registry.internal/geneva-ray-worker:0.1.0"))):
        assert pod["spec"]["containers"][0]["image"] == "registry.internal/geneva-ray-worker:0.1.0"


def test_the_spec_image_wins_over_the_operators_default():
    rc = build(settings=ClusterSettings(default_ray_image="registry.internal/w:1"), image="mine/ray:2")
    assert {pod["spec"]["containers"][0]["image"] for pod in pods(rc)} == {"mine/ray:2"}


def test_the_default_image_is_the_ray_worker_image_of_the_charts_app_version():
    chart = yaml.safe_load((REPO / "charts/geneva-operator/Chart.yaml").read_text())
    assert DEFAULT_RAY_IMAGE == f"ghcr.io/lancedb/geneva-ray-worker:{chart['appVersion']}"
    assert chart["appVersion"] == geneva_operator.__version__


def test_env_env_from_volumes_and_mounts_reach_every_ray_container():
    volume = {"name": "cache", "emptyDir": {}}
    mount = {"name": "cache", "mountPath": "/cache"}
    env = [{"name": "HF_HOME", "value": "/cache"}]
    env_from = [{"secretRef": {"name": "s3-credentials"}}]
    rc = build(env=env, envFrom=env_from, volumes=[volume], volumeMounts=[mount])
    for pod in pods(rc):
        assert pod["spec"]["volumes"] == [volume]
        [c] = pod["spec"]["containers"]
        assert (c["env"], c["envFrom"], c["volumeMounts"]) == (env, env_from, [mount])


def test_labels_and_annotations_go_on_the_cluster_and_its_pods_with_ours():
    rc = build(labels={"team": "search"}, annotations={"cost-center": "42"})
    ours = {"app.kubernetes.io/managed-by": "geneva-operator", "geneva.lancedb.com/backfill": "embed"}
    assert rc["metadata"]["labels"] == {"team": "search", **ours}
    assert rc["metadata"]["annotations"]["cost-center"] == "42"
    for pod in pods(rc):
        assert pod["metadata"]["labels"] == {"team": "search", **ours}
        assert pod["metadata"]["annotations"] == {"cost-center": "42"}


def test_our_labels_cannot_be_overridden():
    rc = build(labels={"app.kubernetes.io/managed-by": "helm"})
    assert rc["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "geneva-operator"


def test_long_backfill_names_become_valid_label_values():
    owner = {**OWNER, "name": "b" * 200}
    rc = build_ray_cluster(name="x-ray", namespace="n", owner=owner, spec=make_spec())
    value = rc["metadata"]["labels"]["geneva.lancedb.com/backfill"]
    assert len(value) <= 63 and value[-1].isalnum()


def test_probes_are_left_to_kuberay():
    # KubeRay injects its health probes only into containers that have none.
    for c in containers(build()):
        assert "readinessProbe" not in c and "livenessProbe" not in c


def test_no_autoscaler_unless_asked():
    rc = build()
    assert rc["spec"]["enableInTreeAutoscaling"] is False
    assert "autoscalerOptions" not in rc["spec"]


def test_autoscaling_enables_kuberays_autoscaler_with_the_idle_timeout():
    rc = build(autoscaling={"enabled": True, "idleTimeoutSeconds": 300})
    assert rc["spec"]["enableInTreeAutoscaling"] is True
    assert rc["spec"]["autoscalerOptions"] == {"idleTimeoutSeconds": 300, "upscalingMode": "Default"}


def test_autoscaler_v2_is_written_only_when_asked_so_a_kuberay_upgrade_changes_no_cluster():
    v2 = build(autoscaling={"enabled": True, "version": "v2"})
    assert v2["spec"]["autoscalerOptions"]["version"] == "v2"
    # v1 is what every KubeRay runs without the field: never written, the same cluster (and
    # spec hash) on KubeRay 1.1 as on 1.6
    v1 = build(autoscaling={"enabled": True, "version": "v1"})
    assert "version" not in v1["spec"]["autoscalerOptions"]
    assert v1 == build(autoscaling={"enabled": True})


def test_what_the_installed_kuberay_lacks_is_refused_naming_the_field():
    old = KubeRayFeatures(status_conditions=True, version="1.2")
    with pytest.raises(UnsupportedByKubeRay, match=r"^spec\.cluster\.gcsFaultTolerance: needs KubeRay >= 1\.3"):
        build_ray_cluster(name="embed-ray", namespace="geneva", owner=OWNER, features=old,
                          spec=make_spec(gcsFaultTolerance={"redisAddress": "redis:6379"}))
    # what it has is built as for the newest
    assert build_ray_cluster(name="embed-ray", namespace="geneva", owner=OWNER, spec=make_spec(), features=old) == build()


def test_gcs_fault_tolerance_uses_redis_with_the_password_from_a_secret():
    rc = build(gcsFaultTolerance={"redisAddress": "redis:6379", "redisPasswordSecret": {"name": "redis", "key": "password"}})
    assert rc["spec"]["gcsFaultToleranceOptions"] == {
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis", "key": "password"}}},
    }
    assert "gcsFaultToleranceOptions" not in build()["spec"]


AUTH_ENV = [
    {"name": "RAY_AUTH_MODE", "value": "token"},
    {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": "ray-token", "key": "token"}}},
]


def with_token(**cluster_changes) -> BackfillSpec:
    return make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}, **cluster_changes)


def test_token_auth_puts_the_mode_and_the_secret_token_in_every_ray_container():
    rc = build(with_token())
    for c in containers(rc):
        assert c["env"] == AUTH_ENV


def test_token_auth_reaches_the_autoscaler_sidecar():
    rc = build(with_token(autoscaling={"enabled": True}))
    assert rc["spec"]["autoscalerOptions"]["env"] == AUTH_ENV


def test_token_auth_overrides_user_env_of_the_same_name():
    rc = build(with_token(env=[{"name": "RAY_AUTH_MODE", "value": "disabled"}, {"name": "X", "value": "1"}]))
    for c in containers(rc):
        assert c["env"] == [{"name": "X", "value": "1"}] + AUTH_ENV


def test_no_token_auth_without_a_secret_anywhere():
    rc = build()
    for c in containers(rc):
        assert "env" not in c
    assert token_secret_ref(make_spec()) is None


def test_the_operator_setting_supplies_a_default_token_secret_the_spec_can_override():
    settings = ClusterSettings(ray_token_secret="geneva-ray-token", ray_token_secret_key="t")
    assert token_secret_ref(make_spec(), settings).model_dump() == {"name": "geneva-ray-token", "key": "t"}
    assert token_secret_ref(with_token(), settings).name == "ray-token"
    rc = build(make_spec(), settings)
    assert containers(rc)[0]["env"][1]["valueFrom"]["secretKeyRef"] == {"name": "geneva-ray-token", "key": "t"}


def test_containers_do_not_share_objects():
    # Callers (and kopf) may mutate one part of the manifest; the others must not change with it.
    rc = build(with_token(autoscaling={"enabled": True}, env=[{"name": "X", "value": "1"}]))
    containers(rc)[0]["env"][0]["value"] = "changed"
    assert containers(rc)[1]["env"][0]["value"] == "1"
    assert rc["spec"]["autoscalerOptions"]["env"][0]["value"] == "token"


def test_spec_hash_is_stable_and_ignores_what_changes_in_place():
    first, again = build(), build()
    assert first["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == again["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    scaled = copy.deepcopy(BASE["cluster"]["workerGroups"])
    scaled[0].update(replicas=5, maxReplicas=10)
    assert build(workerGroups=scaled)["metadata"]["annotations"][SPEC_HASH_ANNOTATION] == first["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
    assert build(image="other:1")["metadata"]["annotations"][SPEC_HASH_ANNOTATION] != first["metadata"]["annotations"][SPEC_HASH_ANNOTATION]


def test_the_manifest_is_plain_json():
    rc = build(with_token(autoscaling={"enabled": True}, gcsFaultTolerance={"redisAddress": "r:6379"}))
    assert json.loads(json.dumps(rc)) == rc
