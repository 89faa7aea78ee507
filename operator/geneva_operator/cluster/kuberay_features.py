"""What the installed KubeRay supports, read from its RayCluster CRD: a pure function of it.

The CRD is what the API server validates and prunes RayClusters against, so it is the
truth about which fields survive, whatever version label an installation carries (the
GKE add-on, a Helm chart, a fork). Each feature below is the first KubeRay release whose
`rayclusters.ray.io` schema has the field (checked against the CRDs of 1.1.1 through 1.6.0 in
tests/unit/cluster/test_kuberay_schema.py):

    1.2  status.conditions                 (written by default only from 1.3: feature gate
                                            RayClusterStatusConditions, alpha in 1.2)
    1.3  spec.gcsFaultToleranceOptions
    1.4  spec.autoscalerOptions.version    (autoscaler v2)
    1.5  spec.authOptions                  (KubeRay's own token auth; the operator's works
                                            without it, see raycluster.py)
    1.6  spec.upgradeStrategy

`KubeRayFeatures.version` is therefore a floor ("at least 1.3"), not the release itself.
An operator that cannot read the CRD (RBAC) assumes the oldest supported KubeRay, 1.1:
everything the operator adds by itself works there, and a spec field that needs more fails
naming the field and the missing read permission rather than being pruned in silence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from ..api.models import AutoscalerVersion, BackfillSpec

CRD_NAME = "rayclusters.ray.io"
OLDEST_SUPPORTED = "1.1"

# (release, feature name, path of the field in the v1 openAPIV3Schema's properties)
_MARKERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("1.2", "status_conditions", ("status", "conditions")),
    ("1.3", "gcs_fault_tolerance_options", ("spec", "gcsFaultToleranceOptions")),
    ("1.4", "autoscaler_version", ("spec", "autoscalerOptions", "version")),
    ("1.5", "auth_options", ("spec", "authOptions")),
    ("1.6", "upgrade_strategy", ("spec", "upgradeStrategy")),
)
SINCE = {feature: release for release, feature, _ in _MARKERS}


@dataclass(frozen=True)
class KubeRayFeatures:
    status_conditions: bool = False
    gcs_fault_tolerance_options: bool = False
    autoscaler_version: bool = False
    auth_options: bool = False
    upgrade_strategy: bool = False
    version: str = OLDEST_SUPPORTED  # the newest release whose schema markers are all present
    # Why the CRD could not be read ("" when it was): the features are then the oldest's.
    unreadable: str = ""

    @property
    def conditions_by_default(self) -> bool:
        """KubeRay writes HeadPodReady/RayClusterProvisioned unless told not to (>= 1.3)."""
        return self.status_conditions and _release(self.version) >= _release("1.3")

    def describe(self) -> str:
        if self.unreadable:
            return f"KubeRay unknown ({self.unreadable}); assuming {OLDEST_SUPPORTED}"
        return f"KubeRay >= {self.version} (RayCluster CRD)"


def unreadable(problem: str) -> KubeRayFeatures:
    """The features assumed when the CRD cannot be read: those of the oldest supported KubeRay."""
    return KubeRayFeatures(unreadable=problem or "unreadable")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _schema_has(schema: Mapping[str, Any], path: tuple[str, ...]) -> bool:
    node: Any = schema
    for key in path:
        props = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(props, Mapping) or key not in props:
            return False
        node = props[key]
    return True


def features_from_crd(crd: Mapping[str, Any]) -> KubeRayFeatures:
    """The features of the KubeRay whose `rayclusters.ray.io` CRD (a dict, as the API server
    returns it) this is. Only the served ray.io/v1 version counts: it is the one the operator
    writes."""
    versions = (crd.get("spec") or {}).get("versions") or []
    served = [v for v in versions if v.get("name") == "v1" and v.get("served", True)]
    if not served:
        return unreadable(f"CustomResourceDefinition {CRD_NAME} serves no ray.io/v1")
    schema = ((served[0].get("schema") or {}).get("openAPIV3Schema")) or {}
    found = {feature: _schema_has(schema, path) for _, feature, path in _MARKERS}
    version = OLDEST_SUPPORTED
    for release, feature, _ in _MARKERS:
        if found[feature]:
            version = release
    return KubeRayFeatures(**found, version=version)


@dataclass(frozen=True)
class Requirement:
    """A spec field that needs a KubeRay feature."""

    field: str
    feature: str

    @property
    def since(self) -> str:
        return SINCE[self.feature]

    @property
    def crd_field(self) -> str:
        """The RayCluster field behind the feature, e.g. spec.gcsFaultToleranceOptions."""
        return next(".".join(path) for _, f, path in _MARKERS if f == self.feature)


def requirements(spec: BackfillSpec) -> list[Requirement]:
    """What of the version-dependent KubeRay this spec asks for."""
    cluster = spec.cluster
    if cluster is None:  # an existingCluster: not ours to build
        return []
    needed = []
    if cluster.gcs_fault_tolerance is not None:
        needed.append(Requirement("spec.cluster.gcsFaultTolerance", "gcs_fault_tolerance_options"))
    if cluster.autoscaling.enabled and cluster.autoscaling.version == AutoscalerVersion.v2:
        needed.append(Requirement("spec.cluster.autoscaling.version", "autoscaler_version"))
    return needed


@dataclass(frozen=True)
class Unsupported:
    requirement: Requirement
    reason: str  # KubeRayTooOld, or KubeRayUnknown when the CRD could not be read
    message: str


def unsupported(spec: BackfillSpec, features: KubeRayFeatures) -> Optional[Unsupported]:
    """The first thing in `spec` the installed KubeRay cannot do, or None."""
    for req in requirements(spec):
        if getattr(features, req.feature):
            continue
        needs = f"needs KubeRay >= {req.since} (RayCluster {req.crd_field})"
        if features.unreadable:
            return Unsupported(req, "KubeRayUnknown", f"{needs}; the operator cannot read CustomResourceDefinition "
                               f"{CRD_NAME} to check the installed KubeRay ({features.unreadable}): grant it get on it")
        return Unsupported(req, "KubeRayTooOld", f"{needs}; the installed KubeRay's CRD is that of {features.version}")
    return None

