"""What a RayCluster's own status says about it, as KubeRay writes it: object in, answer out."""
from __future__ import annotations

from typing import Any, Mapping, Optional


def ray_cluster_ready(obj: Mapping[str, Any]) -> tuple[bool, str]:
    """KubeRay >= 1.2 conditions (HeadPodReady, RayClusterProvisioned, RayClusterReplicaFailure),
    falling back to the older `.status.state == ready`."""
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return False, "RayCluster is being deleted"
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    head = conditions.get("HeadPodReady")
    if head is not None and head.get("status") == "True":
        return True, ""
    if head is None and status.get("state") == "ready":
        return True, ""
    failure = conditions.get("RayClusterReplicaFailure")
    if failure is not None and failure.get("status") == "True":
        return False, f"{failure.get('reason', '')}: {failure.get('message', '')}".strip(": ")
    if head is not None:
        return False, f"head pod not ready: {head.get('reason', '')} {head.get('message', '')}".strip()
    return False, f"RayCluster state {status.get('state') or 'unknown'}"


def head_image(obj: Mapping[str, Any]) -> Optional[str]:
    containers = (((obj.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return containers[0].get("image") if containers else None
