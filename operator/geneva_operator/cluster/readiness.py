"""Whether a RayCluster can take a job, as each KubeRay says it: RayCluster and pods in,
(ready, why not) out.

KubeRay has said it two ways (read in each release's RayCluster controller):

* From 1.3 by default (1.2 behind its RayClusterStatusConditions feature gate), conditions:
  `HeadPodReady` follows the head pod's Ready condition both ways; `RayClusterProvisioned`
  turns True once every pod was ready and stays so, which says nothing about now (and waits
  for workers a job does not need); `RayClusterReplicaFailure` says why pods could not be made.
* Before that (1.1, and 1.2 by default) only `status.state`: `ready` once every pod that exists
  runs and is Ready, `failed` with `status.reason` when pods could not be made. `ready` is never
  taken back (a head pod that restarts leaves it), so the head pod itself has the last word.

A cluster of a KubeRay that writes conditions by default, but none yet, has not been seen by
KubeRay: not ready, whatever the pods say. If that KubeRay has the gate turned off it writes
none ever; `status.state` and the head pod then decide, as for the older releases.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from .kuberay_features import KubeRayFeatures
from .pods import NODE_TYPE_LABEL, pod_ready

HEAD_POD_READY = "HeadPodReady"
REPLICA_FAILURE = "RayClusterReplicaFailure"


def ray_cluster_ready(obj: Mapping[str, Any], features: KubeRayFeatures,
                      pods: Iterable[Mapping[str, Any]] = ()) -> tuple[bool, str]:
    """(ready, message) of RayCluster `obj` whose pods are `pods` (as the pod index holds them)."""
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return False, "RayCluster is being deleted"
    status = obj.get("status") or {}
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    failure = conditions.get(REPLICA_FAILURE)
    head = conditions.get(HEAD_POD_READY)
    if head is not None:
        if head.get("status") == "True":
            return True, ""
        if failure is not None and failure.get("status") == "True":
            return False, _say(failure.get("reason"), failure.get("message"))
        return False, f"head pod not ready: {_say(head.get('reason'), head.get('message'))}".rstrip(": ")
    if features.conditions_by_default and not status.get("state"):
        return False, f"waiting for KubeRay's first status of the cluster ({HEAD_POD_READY})"
    state = status.get("state") or "unknown"
    if state == "failed":
        return False, _say("RayCluster failed", status.get("reason"))
    if state != "ready":
        return False, f"RayCluster state {state}"
    head_pod = _head_pod(pods)
    if head_pod is None:
        return False, "RayCluster state ready, but its head pod is not there"
    if not pod_ready(head_pod):
        name = (head_pod.get("metadata") or {}).get("name") or "?"
        return False, f"RayCluster state ready, but head pod {name} is not Ready"
    return True, ""


def head_image(obj: Mapping[str, Any]) -> Optional[str]:
    """The image of the RayCluster's head container (what a cluster was built with)."""
    containers = (((obj.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
    return containers[0].get("image") if containers else None


def _head_pod(pods: Iterable[Mapping[str, Any]]) -> Optional[Mapping[str, Any]]:
    return next((p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(NODE_TYPE_LABEL) == "head"), None)


def _say(reason: Optional[str], message: Optional[str]) -> str:
    return f"{reason or ''}: {message or ''}".strip(": ")
