"""Why a Ray cluster's pods do not start, read from their status as the kubelet and the
scheduler write it: pods in, one problem (or None) out.

KubeRay reports a RayCluster whose head cannot pull its image, or whose workers no node
will take, only as "not ready", which its users meet as clusters stuck initializing
(KubeRay issues #1990, #2182). The pods say why, in two places:

* `status.containerStatuses[].state.waiting` (and `initContainerStatuses`: KubeRay's worker
  pods first run an init container from the same image), written by the kubelet: reason
  ErrImagePull / ImagePullBackOff / ErrImageNeverPull / InvalidImageName, and a message
  naming the image;
* `status.conditions[type=PodScheduled]`, written by the scheduler: status False, reason
  Unschedulable, and a message such as "0/3 nodes are available: 3 node(s) didn't match
  Pod's node affinity/selector".

A group with at least one Ready pod is running: its other pods' trouble is capacity, which
the job copes with, not a cluster that cannot start.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

# KubeRay's labels on every pod of a RayCluster.
CLUSTER_LABEL = "ray.io/cluster"
GROUP_LABEL = "ray.io/group"
NODE_TYPE_LABEL = "ray.io/node-type"

IMAGE_PULL_FAILED = "ImagePullFailed"
UNSCHEDULABLE = "Unschedulable"
POD_PROBLEM_REASONS = frozenset({IMAGE_PULL_FAILED, UNSCHEDULABLE})

# The kubelet's waiting reasons for an image it cannot get. All but InvalidImageName may
# clear by themselves (the registry comes back, the image is loaded onto the node, a pull
# Secret appears), so they wait for the startup deadline; a malformed reference never does.
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
PERMANENT_PULL_REASONS = frozenset({"InvalidImageName"})

MAX_DETAIL = 400  # of a kubelet or scheduler message quoted in a condition


@dataclass(frozen=True)
class PodProblem:
    reason: str  # ImagePullFailed | Unschedulable
    message: str  # names the group, the pod and the image or node selector
    permanent: bool = False  # waiting cannot help: fail now


def slim_pod(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a pod `pod_problem` reads, in the pod's own shape (what the operator's
    pod index keeps in memory: pods are many and mostly large)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}

    def statuses(key: str) -> list[dict[str, Any]]:
        return [{"name": c.get("name"), "image": c.get("image"),
                 "state": {"waiting": c["state"]["waiting"]} if (c.get("state") or {}).get("waiting") else {}}
                for c in status.get(key) or []]

    return {
        "metadata": {"name": meta.get("name"), "labels": dict(meta.get("labels") or {})},
        "spec": {
            "nodeSelector": dict(spec.get("nodeSelector") or {}),
            "containers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("containers") or []],
            "initContainers": [{"name": c.get("name"), "image": c.get("image")} for c in spec.get("initContainers") or []],
        },
        "status": {
            "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in status.get("conditions") or []],
            "containerStatuses": statuses("containerStatuses"),
            "initContainerStatuses": statuses("initContainerStatuses"),
        },
    }


def pod_problem(pods: Iterable[Mapping[str, Any]]) -> Optional[PodProblem]:
    """Why the cluster of these pods cannot start, or None: the first stuck group's problem
    (the head before the workers), a permanent one before any other."""
    groups: dict[tuple[bool, str], list[Mapping[str, Any]]] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        worker = labels.get(NODE_TYPE_LABEL) != "head"
        groups.setdefault((worker, labels.get(GROUP_LABEL, "")), []).append(pod)
    problems = []
    for (worker, group), members in sorted(groups.items()):
        if any(pod_ready(p) for p in members):
            continue
        for pod in sorted(members, key=lambda p: (p.get("metadata") or {}).get("name") or ""):
            found = _image_problem(pod, worker, group) or _scheduling_problem(pod, worker, group)
            if found is not None:
                problems.append(found)
                break
    return next((p for p in problems if p.permanent), problems[0] if problems else None)


def _who(pod: Mapping[str, Any], worker: bool, group: str) -> str:
    name = (pod.get("metadata") or {}).get("name") or "?"
    return f"worker group {group} (pod {name})" if worker else f"head pod {name}"


def pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _conditions(pod))


def _conditions(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return (pod.get("status") or {}).get("conditions") or []


def _image_problem(pod: Mapping[str, Any], worker: bool, group: str) -> Optional[PodProblem]:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    images = {c.get("name"): c.get("image") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])}
    for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (c.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason in IMAGE_PULL_REASONS:
            image = images.get(c.get("name")) or c.get("image") or "?"
            detail = _short(waiting.get("message") or "")
            message = f"{_who(pod, worker, group)}: image {image}: {reason}" + (f": {detail}" if detail else "")
            return PodProblem(IMAGE_PULL_FAILED, message, permanent=reason in PERMANENT_PULL_REASONS)
    return None


def _scheduling_problem(pod: Mapping[str, Any], worker: bool, group: str) -> Optional[PodProblem]:
    for c in _conditions(pod):
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            selector = (pod.get("spec") or {}).get("nodeSelector") or {}
            labels = ", ".join(f"{k}={v}" for k, v in sorted(selector.items())) or "none"
            detail = _short(c.get("message") or "")
            message = f"{_who(pod, worker, group)} is unschedulable (node selector {labels})" + (f": {detail}" if detail else "")
            return PodProblem(UNSCHEDULABLE, message)
    return None


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 3] + "..."
