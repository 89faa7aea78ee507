"""Built RayClusters against KubeRay's own RayCluster CRD schema (the version tier 3 runs).

Unknown fields are errors here although the API server would silently prune them: a field
KubeRay does not know is a builder bug that would otherwise only show as a missing setting.
"""
from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from geneva_operator.api.models import BackfillSpec
from geneva_operator.cluster import build_ray_cluster, ray_cluster_name

REPO = Path(__file__).resolve().parents[3]
MODULE = "github.com/ray-project/kuberay/ray-operator"
CRD_IN_MODULE = "config/crd/bases/ray.io_rayclusters.yaml"


def kuberay_version() -> str:
    for line in (REPO / "tests/controlplane/versions.env").read_text().splitlines():
        if line.startswith("KUBERAY_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("KUBERAY_VERSION missing from tests/controlplane/versions.env")


def kuberay_crd_file() -> Path:
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to fetch KubeRay's CRD (go mod download)"
    module = f"{MODULE}@{kuberay_version()}"
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    path = Path(cache) / module / CRD_IN_MODULE
    if not path.is_file():
        done = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        path = Path(json.loads(done.stdout)["Dir"]) / CRD_IN_MODULE
    return path


def strict(node):
    """The schema with pruning turned into errors."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    # 900 kB of YAML: the C loader takes seconds where the pure-Python one takes a minute.
    crd = yaml.load(kuberay_crd_file().read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(strict(version["schema"]["openAPIV3Schema"]))


def everything_on() -> BackfillSpec:
    return BackfillSpec.model_validate({
        "table": {"uri": "s3://b/db", "name": "t"},
        "column": "c",
        "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32", "resources": {"gpu": 1}},
        "auth": {"tokenSecretRef": {"name": "ray-token"}},
        "cluster": {
            "imagePullPolicy": "IfNotPresent",
            "imagePullSecrets": [{"name": "registry"}],
            "head": {"rayStartParams": {"object-store-memory": "100000000"}},
            "workerGroups": [
                {"name": "cpu", "replicas": 1, "maxReplicas": 4, "rayStartParams": {"num-cpus": "3"}},
                {"name": "gpu", "type": "gpu", "gpu": 1, "replicas": 0, "maxReplicas": 2},
            ],
            "autoscaling": {"enabled": True, "idleTimeoutSeconds": 120},
            "envFrom": [{"secretRef": {"name": "s3"}}, {"configMapRef": {"name": "cfg"}, "prefix": "X_"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            "tolerations": [{"key": "spot", "operator": "Exists", "effect": "NoSchedule"}],
            "nodeSelector": {"zone": "a"},
            "labels": {"team": "x"},
            "annotations": {"note": "y"},
            "priorityClassName": "low",
            "gcsFaultTolerance": {"redisAddress": "redis:6379", "redisPasswordSecret": {"name": "redis", "key": "pw"}},
        },
    })


OWNER = {"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill", "name": "b", "uid": "u"}


def errors(validator, manifest) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(manifest)]


def test_a_cluster_with_every_option_matches_kuberays_schema(validator):
    manifest = build_ray_cluster(name=ray_cluster_name("b"), namespace="n", owner=OWNER, spec=everything_on())
    assert errors(validator, manifest) == []


def test_a_minimal_cluster_matches_kuberays_schema(validator):
    spec = BackfillSpec.model_validate(
        {"table": {"uri": "/db", "name": "t"}, "column": "c", "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32"}, "cluster": {}}
    )
    assert errors(validator, build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=spec)) == []


def test_the_check_catches_a_field_kuberay_does_not_know(validator):
    manifest = build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=everything_on())
    broken = copy.deepcopy(manifest)
    broken["spec"]["headGroupSpec"]["template"]["spec"]["nodeSelectr"] = {}
    broken["spec"]["autoscalerOptions"]["idleTimeout"] = 1
    found = errors(validator, broken)
    assert any("nodeSelectr" in e for e in found) and any("idleTimeout" in e for e in found)
