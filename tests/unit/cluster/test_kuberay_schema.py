"""Built RayClusters against KubeRay's own RayCluster CRD schema, of every version the
compatibility matrix runs (tests/controlplane/versions.env KUBERAY_VERSIONS), each built with
the features the operator reads from that very CRD.

Unknown fields are errors here although the API server would silently prune them: a field
KubeRay does not know is a builder bug that would otherwise only show as a missing setting.
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import jsonschema
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import kuberay_crds  # noqa: E402

from geneva_operator.api.models import BackfillSpec  # noqa: E402
from geneva_operator.cluster import build_ray_cluster, ray_cluster_name  # noqa: E402
from geneva_operator.cluster.kuberay_features import KubeRayFeatures, features_from_crd, requirements  # noqa: E402
from geneva_operator.cluster.raycluster import UnsupportedByKubeRay  # noqa: E402

VERSIONS = kuberay_crds.kuberay_versions()


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


@pytest.fixture(scope="module", params=VERSIONS)
def kuberay(request) -> tuple[str, jsonschema.Validator, KubeRayFeatures]:
    """(version, a strict validator of its RayCluster v1 schema, the features read from its CRD)."""
    version = request.param
    validator = jsonschema.Draft7Validator(strict(kuberay_crds.v1_schema(version)))
    return version, validator, features_from_crd(kuberay_crds.crd(version))


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


def supported_by(features: KubeRayFeatures, spec: BackfillSpec) -> BackfillSpec:
    """`spec` without what `features` lacks (what a user of that KubeRay could ask for)."""
    wire = spec.to_wire()
    for req in requirements(spec):
        if not getattr(features, req.feature):
            node = wire
            *path, last = req.field.split(".")[1:]
            for key in path:
                node = node[key]
            node.pop(last)
    return BackfillSpec.model_validate(wire)


def everything_v2() -> BackfillSpec:
    wire = everything_on().to_wire()
    wire["cluster"]["autoscaling"]["version"] = "v2"
    return BackfillSpec.model_validate(wire)


def test_a_cluster_with_every_option_that_kuberay_has_matches_its_schema(kuberay):
    version, validator, features = kuberay
    spec = supported_by(features, everything_v2())
    manifest = build_ray_cluster(name=ray_cluster_name("b"), namespace="n", owner=OWNER, spec=spec, features=features)
    assert errors(validator, manifest) == [], version


def test_a_minimal_cluster_matches_kuberays_schema(kuberay):
    version, validator, features = kuberay
    spec = BackfillSpec.model_validate(
        {"table": {"uri": "/db", "name": "t"}, "column": "c", "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32"}, "cluster": {}}
    )
    assert errors(validator, build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=spec, features=features)) == [], version


def test_what_kuberay_lacks_is_refused_not_built(kuberay):
    version, validator, features = kuberay
    lacking = [r for r in requirements(everything_v2()) if not getattr(features, r.feature)]
    if not lacking:
        assert errors(validator, build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=everything_v2(),
                                                   features=features)) == []
        return
    with pytest.raises(UnsupportedByKubeRay, match=lacking[0].field.replace(".", r"\.")):
        build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=everything_v2(), features=features)
    # and what the builder would have written is indeed unknown to that KubeRay
    unchecked = build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=everything_v2())
    found = errors(validator, unchecked)
    assert found and all(any(r.crd_field.split(".")[-1] in e for e in found) for r in lacking), found


def test_the_check_catches_a_field_kuberay_does_not_know(kuberay):
    _, validator, features = kuberay
    manifest = build_ray_cluster(name="b-ray", namespace="n", owner=OWNER, spec=supported_by(features, everything_on()),
                                 features=features)
    broken = copy.deepcopy(manifest)
    broken["spec"]["headGroupSpec"]["template"]["spec"]["nodeSelectr"] = {}
    broken["spec"]["autoscalerOptions"]["idleTimeout"] = 1
    found = errors(validator, broken)
    assert any("nodeSelectr" in e for e in found) and any("idleTimeout" in e for e in found)
