"""What the operator reads from KubeRay's RayCluster CRD, against the real CRD of every version
of the compatibility matrix, and what it then refuses to build."""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))
import kuberay_crds  # noqa: E402

from geneva_operator.api.models import BackfillSpec  # noqa: E402
from geneva_operator.cluster.kuberay_features import (  # noqa: E402
    OLDEST_SUPPORTED,
    KubeRayFeatures,
    features_from_crd,
    requirements,
    unreadable,
    unsupported,
)

VERSIONS = kuberay_crds.kuberay_versions()
FEATURES = ("status_conditions", "gcs_fault_tolerance_options", "autoscaler_version", "auth_options", "upgrade_strategy")
# The first release with each feature, as read in each release's CRD and controller source.
FIRST = {"status_conditions": "1.2", "gcs_fault_tolerance_options": "1.3", "autoscaler_version": "1.4",
         "auth_options": "1.5", "upgrade_strategy": "1.6"}


def minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in minor(version).split("."))


def test_the_matrix_spans_the_supported_range():
    assert minor(VERSIONS[0]) == OLDEST_SUPPORTED and VERSIONS == sorted(VERSIONS, key=release)


@pytest.mark.parametrize("version", VERSIONS)
def test_each_kuberays_crd_shows_exactly_the_features_of_its_release(version):
    features = features_from_crd(kuberay_crds.crd(version))
    assert {f: getattr(features, f) for f in FEATURES} == {f: release(version) >= release(FIRST[f]) for f in FEATURES}
    # Every release of the matrix brought a marker: the floor read is the release itself.
    assert features.version == minor(version) and not features.unreadable
    assert features.conditions_by_default == (release(version) >= (1, 3))


def test_only_the_served_v1_schema_counts():
    crd = copy.deepcopy(kuberay_crds.crd(VERSIONS[-1]))
    for v in crd["spec"]["versions"]:
        if v["name"] == "v1":
            v["served"] = False
    features = features_from_crd(crd)
    assert features.unreadable and features == unreadable(features.unreadable)


def spec(**cluster) -> BackfillSpec:
    return BackfillSpec.model_validate({"table": {"uri": "/db", "name": "t"}, "column": "c",
                                        "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32"},
                                        "cluster": cluster})


GCS_FT = {"gcsFaultTolerance": {"redisAddress": "redis:6379"}}
V2 = {"autoscaling": {"enabled": True, "version": "v2"}}


def test_what_a_spec_needs_of_kuberay():
    assert requirements(spec()) == []
    assert [(r.field, r.since, r.crd_field) for r in requirements(spec(**GCS_FT, **V2))] == [
        ("spec.cluster.gcsFaultTolerance", "1.3", "spec.gcsFaultToleranceOptions"),
        ("spec.cluster.autoscaling.version", "1.4", "spec.autoscalerOptions.version"),
    ]
    # v2 of an autoscaler that is off asks for nothing; v1 is every KubeRay's
    assert requirements(spec(autoscaling={"enabled": False, "version": "v2"})) == []
    assert requirements(spec(autoscaling={"enabled": True, "version": "v1"})) == []
    existing = spec().model_copy(update={"cluster": None})
    assert requirements(existing) == []


def test_a_spec_kuberay_cannot_serve_names_the_field_and_the_version_needed():
    on_1_2 = features_from_crd(kuberay_crds.crd(next(v for v in VERSIONS if minor(v) == "1.2")))
    problem = unsupported(spec(**GCS_FT), on_1_2)
    assert problem.reason == "KubeRayTooOld" and problem.requirement.field == "spec.cluster.gcsFaultTolerance"
    assert problem.message == ("needs KubeRay >= 1.3 (RayCluster spec.gcsFaultToleranceOptions); "
                               "the installed KubeRay's CRD is that of 1.2")
    on_1_3 = KubeRayFeatures(status_conditions=True, gcs_fault_tolerance_options=True, version="1.3")
    assert unsupported(spec(**GCS_FT), on_1_3) is None
    assert unsupported(spec(**GCS_FT, **V2), on_1_3).requirement.field == "spec.cluster.autoscaling.version"


def test_an_unreadable_crd_is_the_oldest_kuberay_and_says_what_to_grant():
    features = unreadable("403 Forbidden: get customresourcedefinitions/rayclusters.ray.io")
    assert {f: getattr(features, f) for f in FEATURES} == dict.fromkeys(FEATURES, False)
    assert features.version == OLDEST_SUPPORTED
    assert unsupported(spec(), features) is None  # what the operator adds by itself works on the oldest
    problem = unsupported(spec(**GCS_FT), features)
    assert problem.reason == "KubeRayUnknown"
    assert "needs KubeRay >= 1.3" in problem.message and "403 Forbidden" in problem.message
    assert "grant it get on it" in problem.message


def test_the_readme_supports_exactly_what_the_matrix_runs():
    readme = (kuberay_crds.REPO / "README.md").read_text()
    [(low, high, listed)] = re.findall(r"Supported: \*\*KubeRay ([\d.]+)-([\d.]+)\*\*, exactly the\s+versions the "
                                       r"test matrix runs \(([^)]*)\)", readme)
    assert (f"v{low}", f"v{high}") == (VERSIONS[0], VERSIONS[-1])
    assert [f"v{v.strip()}" for v in listed.split(",")] == VERSIONS
