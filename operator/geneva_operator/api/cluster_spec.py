"""The spec's RayCluster: the cluster the operator creates (spec.cluster) or the one it uses
(spec.existingCluster). Part of the GenevaBackfill API (models.py re-exports it)."""
from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Optional

from pydantic import Field, field_validator

from .base import DNS_LABEL_PATTERN, QUANTITY_PATTERN, Rule, _Model


class WorkerType(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


class LocalObjectReference(_Model):
    name: str = Field(min_length=1, description="Name of the object, in the backfill's namespace.")


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, description="Secret name, in the backfill's namespace.")
    key: str = Field(default="token", min_length=1, description="Key inside the Secret.")


class EnvFromSource(_Model):
    secret_ref: Optional[LocalObjectReference] = Field(default=None, description="A Secret whose keys become environment variables.")
    config_map_ref: Optional[LocalObjectReference] = Field(default=None, description="A ConfigMap whose keys become environment variables.")
    prefix: Optional[str] = Field(default=None, description="Prefix added to every variable name.")


class Toleration(_Model):
    """A Kubernetes pod toleration, added to the head and every worker group."""

    key: Optional[str] = Field(default=None, description="Taint key; empty with operator Exists tolerates every taint.")
    operator: Optional[str] = Field(default=None, pattern=r"^(Exists|Equal)$", description="Exists or Equal (default Equal).")
    value: Optional[str] = Field(default=None, description="Taint value, with operator Equal.")
    effect: Optional[str] = Field(
        default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$", description="Taint effect; empty matches all."
    )
    toleration_seconds: Optional[int] = Field(default=None, description="How long a NoExecute taint is tolerated.")


class HeadSpec(_Model):
    """The Ray head pod. It runs the job's driver and no UDF tasks (num-cpus 0)."""

    cpu: str = Field(default="1", pattern=QUANTITY_PATTERN, description="CPU request and limit of the head pod.")
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN, description="Memory request and limit of the head pod.")
    ray_start_params: dict[str, str] = Field(
        default_factory=dict, description="Extra `ray start` parameters; num-cpus and dashboard-host are fixed."
    )


class WorkerGroup(_Model):
    """A group of identical Ray worker pods, placed on nodes labelled for its type."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=30, description="Group name, unique in the cluster (a DNS label).")
    type: WorkerType = Field(
        default=WorkerType.cpu,
        description="cpu: nodes labelled geneva.lancedb.com/ray-worker-cpu. gpu: nodes labelled "
        "geneva.lancedb.com/ray-worker-gpu, with nvidia.com/gpu limits.",
    )
    replicas: int = Field(default=1, ge=0, description="Pods to start with (the autoscaler moves it between min and max).")
    min_replicas: int = Field(default=0, ge=0, description="Fewest pods the autoscaler keeps.")
    max_replicas: int = Field(default=1, ge=0, description="Most pods the autoscaler starts.")
    cpu: str = Field(default="1", pattern=QUANTITY_PATTERN, description="CPU request and limit of each pod.")
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN, description="Memory request and limit of each pod.")
    gpu: int = Field(default=0, ge=0, description="nvidia.com/gpu per pod; must be > 0 exactly when type is gpu.")
    ray_start_params: dict[str, str] = Field(default_factory=dict, description="Extra `ray start` parameters.")

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="self.minReplicas <= self.replicas",
            message="minReplicas must not exceed replicas",
            check=lambda g: g.min_replicas <= g.replicas,
            field_path=".minReplicas",
        ),
        Rule(
            cel="self.replicas <= self.maxReplicas",
            message="replicas must not exceed maxReplicas",
            check=lambda g: g.replicas <= g.max_replicas,
            field_path=".replicas",
        ),
        Rule(
            cel="(self.type == 'gpu') == (self.gpu > 0)",
            message="gpu must be > 0 when type is gpu, and 0 when type is cpu",
            check=lambda g: (g.type == WorkerType.gpu.value) == (g.gpu > 0),
            field_path=".gpu",
        ),
    )


class AutoscalerVersion(str, Enum):
    v1 = "v1"
    v2 = "v2"


class Autoscaling(_Model):
    enabled: bool = Field(default=False, description="Run the Ray autoscaler: worker groups scale between minReplicas and maxReplicas.")
    idle_timeout_seconds: int = Field(default=60, ge=0, description="Seconds an idle worker lives before the autoscaler removes it.")
    version: AutoscalerVersion = Field(
        default=AutoscalerVersion.v1,
        description="v1, or v2 (Ray's autoscaler v2; needs KubeRay >= 1.4, whose autoscalerOptions.version selects it).",
    )


class GcsFaultTolerance(_Model):
    redis_address: str = Field(min_length=1, description="host:port of an external Redis for Ray GCS fault tolerance.")
    redis_password_secret: Optional[SecretKeyRef] = Field(default=None, description="Secret holding the Redis password.")


# The API server's CEL cost estimate multiplies by list lengths: keep lists that rules walk bounded.
MAX_WORKER_GROUPS = 16


class ClusterSpec(_Model):
    """A RayCluster the operator creates for this backfill, owned by it."""

    ray_version: str = Field(default="2.60.0", description="Ray version of the image (KubeRay's rayVersion).")
    # No default here: the operator fills in its own (settings.py), so that an air-gapped
    # install points every backfill at its registry with one chart value, and an operator
    # upgrade brings the engine image that speaks its job contract.
    image: Optional[str] = Field(
        default=None,
        min_length=1,
        description="Image of the head and worker pods; must hold the backfill engine (geneva-operator[engine]) "
        "and the UDF's module. Unset: the operator's default Ray image (chart value rayImage, "
        "GENEVA_DEFAULT_RAY_IMAGE), ghcr.io/lancedb/geneva-ray-worker at the operator's version.",
    )
    image_pull_policy: Optional[str] = Field(
        default=None, pattern=r"^(Always|IfNotPresent|Never)$", description="Always, IfNotPresent or Never."
    )
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list, description="Secrets to pull the image with.")
    service_account_name: str = Field(
        default="geneva-ray-runner", description="Service account of the Ray pods (the identity that reads and writes the table)."
    )
    head: HeadSpec = Field(default_factory=HeadSpec, description="The head pod.")
    worker_groups: list[WorkerGroup] = Field(
        default_factory=lambda: [WorkerGroup(name="cpu")],
        max_length=MAX_WORKER_GROUPS,
        description="Worker groups; names must be unique.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="The Ray autoscaler.")
    env_from: list[EnvFromSource] = Field(default_factory=list, description="Secrets and ConfigMaps exposed as environment variables.")
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra container env (Kubernetes EnvVar objects).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    volumes: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra pod volumes (Kubernetes Volume objects).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    volume_mounts: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra volume mounts of the Ray containers (Kubernetes VolumeMount objects).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Tolerations of every Ray pod (gpu groups also tolerate nvidia.com/gpu)."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node selectors, added to the geneva group labels.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the RayCluster and its pods.")
    annotations: dict[str, str] = Field(default_factory=dict, description="Annotations of the RayCluster and its pods.")
    priority_class_name: Optional[str] = Field(default=None, description="PriorityClass of the Ray pods.")
    gcs_fault_tolerance: Optional[GcsFaultTolerance] = Field(
        default=None, description="Keep Ray's GCS in an external Redis, so the cluster survives a head restart."
    )

    @field_validator("worker_groups")
    @classmethod
    def _group_names_unique(cls, v: list[WorkerGroup]) -> list[WorkerGroup]:
        # The API server enforces this through the list-map key; this is the mirror.
        names = [g.name for g in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"worker group names must be unique: {', '.join(dupes)} repeated")
        return v


class ExistingCluster(_Model):
    name: str = Field(min_length=1, description="A RayCluster in the backfill's namespace. Never patched or deleted by the operator.")
