"""What a spec change does to a RayCluster that already exists.

Policy (the operator applies it; these functions only compute):

* In place, immediately, even while a job runs: worker group `minReplicas`/`maxReplicas`,
  `replicas` (only while the autoscaler is off: with it on, the autoscaler owns `replicas`),
  and the autoscaler's `idleTimeoutSeconds`. KubeRay and its autoscaler act on these without
  restarting anything; tasks lost on removed workers are retried by Ray and committed fragments
  are never recomputed, so scaling is safe under a running job.
* Everything else (image, rayVersion, resources, head, placement, env, volumes, the set of
  worker groups, autoscaling on/off, GCS fault tolerance, auth) only takes effect on new pods,
  and KubeRay does not roll existing ones. Recreating the cluster kills a running driver, so
  the recommendation is: never recreate under a running job; record a `ClusterOutdated`
  condition (reason `SpecChanged`, message listing `needs_recreate`'s fields), and recreate
  the cluster before the next attempt or run, when no job is running. A user who wants it
  now suspends and resumes the backfill. An `existingCluster` is never patched or recreated.

The `geneva.lancedb.com/spec-hash` annotation hashes exactly the non-in-place part, so two
clusters with equal hashes never need a recreate between them.
"""
from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Optional

from .names import SPEC_HASH_ANNOTATION

IN_PLACE_GROUP_FIELDS = ("replicas", "minReplicas", "maxReplicas")
_MISSING = object()


def recreate_view(ray_cluster_spec: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster spec without the fields that change in place."""
    view = copy.deepcopy(ray_cluster_spec)
    for group in view.get("workerGroupSpecs", []):
        for field in IN_PLACE_GROUP_FIELDS:
            group.pop(field, None)
    view.get("autoscalerOptions", {}).pop("idleTimeoutSeconds", None)
    return view


def spec_hash(ray_cluster_spec: dict[str, Any]) -> str:
    canonical = json.dumps(recreate_view(ray_cluster_spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _groups(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g["groupName"]: g for g in cluster.get("spec", {}).get("workerGroupSpecs", [])}


def in_place_patch(current: dict[str, Any], desired: dict[str, Any]) -> Optional[dict[str, Any]]:
    """A JSON merge patch taking `current` to `desired` in the fields that change in place, or
    None when they already agree. A merge patch replaces lists whole, so the patch carries all of
    current's worker groups (server-set fields kept) and current's resourceVersion: should the
    autoscaler write `replicas` in between, the API server answers 409 instead of losing it."""
    current_groups, desired_groups = _groups(current), _groups(desired)
    if set(current_groups) != set(desired_groups):
        return None  # adding or removing a group is a recreate (see needs_recreate)
    autoscaling = bool(desired["spec"].get("enableInTreeAutoscaling"))
    fields = [f for f in IN_PLACE_GROUP_FIELDS if not (autoscaling and f == "replicas")]

    spec_patch: dict[str, Any] = {}
    groups = []
    for name, group in current_groups.items():
        updated = copy.deepcopy(group)
        for field in fields:
            if field in desired_groups[name]:
                updated[field] = desired_groups[name][field]
        groups.append(updated)
    if groups != list(current_groups.values()):
        spec_patch["workerGroupSpecs"] = groups

    if autoscaling and current["spec"].get("enableInTreeAutoscaling"):
        want = desired["spec"].get("autoscalerOptions", {}).get("idleTimeoutSeconds")
        if want is not None and current["spec"].get("autoscalerOptions", {}).get("idleTimeoutSeconds") != want:
            spec_patch["autoscalerOptions"] = {"idleTimeoutSeconds": want}

    if not spec_patch:
        return None
    patch: dict[str, Any] = {"spec": spec_patch}
    resource_version = current.get("metadata", {}).get("resourceVersion")
    if resource_version:
        patch["metadata"] = {"resourceVersion": resource_version}
    return patch


def _diff(path: str, current: Any, desired: Any) -> list[str]:
    # desired must be contained in current: the API server adds defaults (ports' protocol,
    # secretKeyRef fields, ...) that the builder never writes and that are not changes.
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return [path]
        return [p for k, v in desired.items() for p in _diff(f"{path}.{k}", current.get(k, _MISSING), v)]
    if isinstance(desired, list):
        if not isinstance(current, list) or len(current) != len(desired):
            return [path]
        return [p for i, (c, d) in enumerate(zip(current, desired)) for p in _diff(f"{path}[{i}]", c, d)]
    return [] if current == desired else [path]


def needs_recreate(current: dict[str, Any], desired: dict[str, Any]) -> list[str]:
    """Paths of the fields that differ and cannot change in place; empty when none do.

    Worker groups are named by groupName (`spec.workerGroupSpecs[gpu].template...`). A change the
    containment check cannot see (a key removed from a map) still shows as a spec-hash change."""
    current_view, desired_view = recreate_view(current.get("spec", {})), recreate_view(desired.get("spec", {}))
    current_groups = {g["groupName"]: g for g in current_view.pop("workerGroupSpecs", [])}
    desired_groups = {g["groupName"]: g for g in desired_view.pop("workerGroupSpecs", [])}

    paths = _diff("spec", current_view, desired_view)
    for name in sorted(set(current_groups) ^ set(desired_groups)):
        paths.append(f"spec.workerGroupSpecs[{name}]")
    for name in sorted(set(current_groups) & set(desired_groups)):
        paths += _diff(f"spec.workerGroupSpecs[{name}]", current_groups[name], desired_groups[name])

    if not paths:
        current_hash = current.get("metadata", {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
        desired_hash = desired.get("metadata", {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION)
        if current_hash != desired_hash:
            paths.append(f"metadata.annotations[{SPEC_HASH_ANNOTATION}]")
    return paths
