"""The KubeRay RayCluster (ray.io/v1) a GenevaBackfill runs on: a pure function of its spec.

Targets KubeRay >= 1.1 and Ray >= 2.52 (token authentication). What only newer KubeRay
knows (gcsFaultToleranceOptions from 1.3, autoscalerOptions.version from 1.4) is emitted only
when the spec asks for it, and only to a KubeRay whose CRD has it (kuberay_features.py): the
API server would silently prune it otherwise. Token auth uses the Secret the spec names rather
than KubeRay's `authOptions` (KubeRay >= 1.5), which generates a token of its own: ours is
known before the cluster exists, the operator reads it to call the Job API, the same Secret
works for an `existingCluster`, and it is plain pod env, so it works on every KubeRay.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from ..api.models import (
    CPU_NODE_LABEL,
    AutoscalerVersion,
    GPU_NODE_LABEL,
    HEAD_NODE_LABEL,
    BackfillSpec,
    ClusterSpec,
    SecretKeyRef,
    WorkerGroup,
    WorkerType,
)
from ..settings import ClusterSettings
from .kuberay_features import KubeRayFeatures, unsupported
from .names import BACKFILL_LABEL, MANAGED_BY, MANAGED_BY_LABEL, SPEC_HASH_ANNOTATION, label_value
from .update import spec_hash

GPU_RESOURCE = "nvidia.com/gpu"
# GPU node pools (GKE, EKS, AKS) taint their nodes so that only pods asking for GPUs land there.
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}

# KubeRay builds the head Service from these container port names.
HEAD_PORTS = [
    {"name": "gcs-server", "containerPort": 6379},
    {"name": "dashboard", "containerPort": 8265},
    {"name": "client", "containerPort": 10001},
]

# Ray (>= 2.52) token authentication: every Ray process reads the mode and the token from the
# environment; the dashboard's health endpoints, which KubeRay's probes use, stay open.
AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"
_MANAGED_ENV = {AUTH_MODE_ENV, AUTH_TOKEN_ENV}
_OWNER_KEYS = ("apiVersion", "kind", "name", "uid")


def token_secret_ref(spec: BackfillSpec, settings: Optional[ClusterSettings] = None) -> Optional[SecretKeyRef]:
    """The Secret holding the Ray token of this backfill's cluster (the operator needs it too, to
    call the Job API), or None when the cluster runs without token auth."""
    if spec.auth.token_secret_ref is not None:
        return spec.auth.token_secret_ref
    if settings is not None and settings.ray_token_secret:
        return SecretKeyRef(name=settings.ray_token_secret, key=settings.ray_token_secret_key)
    return None


def _auth_env(ref: Optional[SecretKeyRef]) -> list[dict[str, Any]]:
    if ref is None:
        return []
    return [
        {"name": AUTH_MODE_ENV, "value": "token"},
        {"name": AUTH_TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}},
    ]


def _resources(cpu: str, memory: str, gpu: int = 0) -> dict[str, Any]:
    # requests == limits: Guaranteed QoS, and Ray sizes itself from the limits.
    amounts = {"cpu": cpu, "memory": memory}
    if gpu:
        amounts[GPU_RESOURCE] = gpu
    return {"requests": dict(amounts), "limits": dict(amounts)}


def ray_image(cluster: ClusterSpec, settings: ClusterSettings) -> str:
    """The image of every Ray container: the spec's, else the operator's default."""
    return cluster.image or settings.default_ray_image


def _container(
    name: str, cluster: ClusterSpec, image: str, resources: dict[str, Any], auth_env: list[dict[str, Any]],
    ports: Optional[list] = None,
) -> dict[str, Any]:
    # The spec's auth wins over an env entry of the same name (the API server would warn about
    # the duplicate and the last one would win anyway).
    user_env = [copy.deepcopy(e) for e in cluster.env if e.get("name") not in _MANAGED_ENV or not auth_env]
    container: dict[str, Any] = {"name": name, "image": image, "resources": resources}
    if cluster.image_pull_policy:
        container["imagePullPolicy"] = cluster.image_pull_policy
    if ports:
        container["ports"] = copy.deepcopy(ports)
    if cluster.env_from:
        container["envFrom"] = [e.to_wire() for e in cluster.env_from]
    if user_env or auth_env:
        container["env"] = user_env + copy.deepcopy(auth_env)
    if cluster.volume_mounts:
        container["volumeMounts"] = copy.deepcopy(cluster.volume_mounts)
    # No readiness/liveness probes here: KubeRay (>= 1.1) injects probes on Ray's own health
    # endpoints (raylet and GCS healthz, tuned per node type) only when a container has none, and
    # Ray's token auth leaves those endpoints open. Ours would replace them, not add to them.
    return container


def _pod_template(
    cluster: ClusterSpec,
    container: dict[str, Any],
    *,
    node_label: str,
    labels: dict[str, str],
    extra_tolerations: tuple[dict[str, Any], ...] = (),
) -> dict[str, Any]:
    tolerations = [t.to_wire() for t in cluster.tolerations]
    tolerations += [t for t in extra_tolerations if t not in tolerations]
    pod_spec: dict[str, Any] = {
        "serviceAccountName": cluster.service_account_name,
        # The group's label wins over an extra selector on the same key: placement is the product's rule.
        "nodeSelector": {**cluster.node_selector, node_label: "true"},
        "containers": [container],
    }
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if cluster.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_wire() for s in cluster.image_pull_secrets]
    if cluster.priority_class_name:
        pod_spec["priorityClassName"] = cluster.priority_class_name
    if cluster.volumes:
        pod_spec["volumes"] = copy.deepcopy(cluster.volumes)
    metadata: dict[str, Any] = {"labels": dict(labels)}
    if cluster.annotations:
        metadata["annotations"] = dict(cluster.annotations)
    return {"metadata": metadata, "spec": pod_spec}


def _head_group(cluster: ClusterSpec, image: str, labels: dict[str, str], auth_env: list) -> dict[str, Any]:
    container = _container("ray-head", cluster, image, _resources(cluster.head.cpu, cluster.head.memory), auth_env, HEAD_PORTS)
    return {
        # The head runs the driver and the dashboard, never UDF tasks: num-cpus 0 keeps them off it.
        "rayStartParams": {**cluster.head.ray_start_params, "num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod_template(cluster, container, node_label=HEAD_NODE_LABEL, labels=labels),
    }


def _worker_group(
    cluster: ClusterSpec, group: WorkerGroup, labels: dict[str, str], auth_env: list, settings: ClusterSettings
) -> dict[str, Any]:
    gpu = group.type == WorkerType.gpu.value
    resources = _resources(group.cpu, group.memory, group.gpu if gpu else 0)
    container = _container("ray-worker", cluster, ray_image(cluster, settings), resources, auth_env)
    start_params = dict(group.ray_start_params)
    if gpu:
        start_params["num-gpus"] = str(group.gpu)
    return {
        "groupName": group.name,
        "replicas": group.replicas,
        "minReplicas": group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": start_params,
        "template": _pod_template(
            cluster,
            container,
            node_label=GPU_NODE_LABEL if gpu else CPU_NODE_LABEL,
            labels=labels,
            extra_tolerations=(GPU_TOLERATION,) if gpu and settings.gpu_toleration else (),
        ),
    }


def _gcs_fault_tolerance(cluster: ClusterSpec) -> Optional[dict[str, Any]]:
    ft = cluster.gcs_fault_tolerance
    if ft is None:
        return None
    options: dict[str, Any] = {"redisAddress": ft.redis_address}
    if ft.redis_password_secret is not None:
        ref = ft.redis_password_secret
        options["redisPassword"] = {"valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
    return options


def _owner_reference(owner: dict) -> dict[str, Any]:
    missing = [k for k in _OWNER_KEYS if not owner.get(k)]
    if missing:
        raise ValueError(f"owner lacks {', '.join(missing)}")
    return {**{k: owner[k] for k in _OWNER_KEYS}, "controller": True, "blockOwnerDeletion": True}


class UnsupportedByKubeRay(ValueError):
    """The spec asks for something the installed KubeRay does not have (kuberay_features.unsupported)."""


def build_ray_cluster(
    *, name: str, namespace: str, owner: dict, spec: BackfillSpec, settings: Optional[ClusterSettings] = None,
    features: Optional[KubeRayFeatures] = None,
) -> dict[str, Any]:
    """The RayCluster `name` for the backfill `owner` ({apiVersion, kind, name, uid}), which it
    controls: Kubernetes deletes the cluster with the backfill. `features`: the installed
    KubeRay's (None: every feature this module knows)."""
    if spec.cluster is None:
        raise ValueError("spec.cluster is not set: the backfill runs on spec.existingCluster")
    if features is not None:
        problem = unsupported(spec, features)
        if problem is not None:
            raise UnsupportedByKubeRay(f"{problem.requirement.field}: {problem.message}")
    settings = settings or ClusterSettings()
    cluster = spec.cluster
    ours = {MANAGED_BY_LABEL: MANAGED_BY, BACKFILL_LABEL: label_value(owner.get("name", name))}
    labels = {**cluster.labels, **ours}
    auth_env = _auth_env(token_secret_ref(spec, settings))

    ray_spec: dict[str, Any] = {
        "rayVersion": cluster.ray_version,
        "enableInTreeAutoscaling": cluster.autoscaling.enabled,
        "headGroupSpec": _head_group(cluster, ray_image(cluster, settings), labels, auth_env),
        "workerGroupSpecs": [_worker_group(cluster, g, labels, auth_env, settings) for g in cluster.worker_groups],
    }
    if cluster.autoscaling.enabled:
        autoscaler: dict[str, Any] = {"idleTimeoutSeconds": cluster.autoscaling.idle_timeout_seconds, "upscalingMode": "Default"}
        if cluster.autoscaling.version == AutoscalerVersion.v2:
            # Only v2 is written: v1 is what every KubeRay runs without the field, so a KubeRay
            # upgrade never turns an unchanged spec into a different cluster (spec hash).
            autoscaler["version"] = AutoscalerVersion.v2.value
        if auth_env:
            # The autoscaler sidecar talks to the GCS too; KubeRay only gives it the token it manages itself.
            autoscaler["env"] = copy.deepcopy(auth_env)
        if cluster.image_pull_policy:
            autoscaler["imagePullPolicy"] = cluster.image_pull_policy
        ray_spec["autoscalerOptions"] = autoscaler
    gcs_ft = _gcs_fault_tolerance(cluster)
    if gcs_ft is not None:
        ray_spec["gcsFaultToleranceOptions"] = gcs_ft

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {**cluster.annotations, SPEC_HASH_ANNOTATION: spec_hash(ray_spec)},
            "ownerReferences": [_owner_reference(owner)],
        },
        "spec": ray_spec,
    }
