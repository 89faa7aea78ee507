"""The GenevaBackfill API: the one source of truth for spec and status.

The CRD under crds/ and the chart's copy are generated from these models (`make crds`);
the engine reads the same `BackfillSpec`. Field names are snake_case in Python and
camelCase on the wire, as Kubernetes users expect.
"""
from __future__ import annotations

import re
from enum import Enum
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from .arrow_types import ArrowTypeError, parse_arrow_type

GROUP = "geneva.lancedb.com"
VERSION = "v1alpha1"
KIND = "GenevaBackfill"
PLURAL = "genevabackfills"
SINGULAR = "genevabackfill"
SHORT_NAMES = ["gbf"]

# Node label keys fixed by our users' clusters (see design.md, section 1).
HEAD_NODE_LABEL = "geneva.lancedb.com/ray-head"
CPU_NODE_LABEL = "geneva.lancedb.com/ray-worker-cpu"
GPU_NODE_LABEL = "geneva.lancedb.com/ray-worker-gpu"

# Kubernetes resource.Quantity, as the API server accepts it.
QUANTITY_PATTERN = r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """camelCase dict without unset optional fields, as it would sit in the resource."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# ---------------------------------------------------------------- spec: the table and the udf


class TableRef(_Model):
    uri: str = Field(min_length=1, description="LanceDB database URI: a local path, s3://bucket/path or gs://bucket/path.")
    name: str = Field(min_length=1, description="Table name inside the database.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        description="Lance storage options (region, endpoint, ...). Never put secrets here: "
        "credentials come from the pod identity or from Secrets named in cluster.envFrom.",
    )


class UdfKind(str, Enum):
    Batch = "Batch"  # f(*arrays) -> array, one pyarrow array per input column
    RecordBatch = "RecordBatch"  # f(batch) -> array
    Scalar = "Scalar"  # f(*values) -> value, one call per row


class UdfResources(_Model):
    cpu: float = Field(default=1.0, ge=0, description="Ray CPUs reserved by each UDF task.")
    gpu: float = Field(default=0.0, ge=0, description="Ray GPUs reserved by each UDF task.")
    memory: Optional[str] = Field(
        default=None, pattern=QUANTITY_PATTERN, description="Memory reserved by each UDF task, as a Kubernetes quantity (2Gi)."
    )


class Udf(_Model):
    function: str = Field(
        pattern=FUNCTION_PATTERN,
        description="module:attribute of the function or class, importable where the job runs "
        "(the Ray image or runtimeEnv). A class is instantiated once per worker process.",
    )
    source: Optional[str] = Field(
        default=None,
        max_length=65536,
        description="Optional inline Python source of the module named in `function`, for small functions.",
    )
    kind: UdfKind = Field(
        default=UdfKind.Batch,
        description="Batch: one pyarrow array per input column in, an array out. RecordBatch: a RecordBatch in. "
        "Scalar: called once per row with Python values.",
    )
    input_columns: list[str] = Field(min_length=1, description="Columns passed to the function, in order.")
    output_type: str = Field(
        description="Arrow type of the output column: int32, float32, bool, string, binary, list<float32>, "
        "fixed_size_list<float32>[384], struct<a: int64, b: string>, timestamp[us] ..."
    )
    version: str = Field(default="1", min_length=1, max_length=63, description="A new version recomputes every selected row.")
    batch_size: int = Field(default=4096, ge=1, le=1_048_576, description="Rows per call of a Batch or RecordBatch function.")
    resources: UdfResources = Field(default_factory=UdfResources)
    init_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the constructor when `function` names a class.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )

    @field_validator("input_columns")
    @classmethod
    def _columns_are_names(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not c]
        if bad:
            raise ValueError("input column names must be non-empty")
        if len(set(v)) != len(v):
            raise ValueError("input columns must not repeat")
        return v

    @field_validator("output_type")
    @classmethod
    def _output_type_parses(cls, v: str) -> str:
        try:
            parse_arrow_type(v)
        except ArrowTypeError as e:
            raise ValueError(str(e)) from None
        return v


class Mode(str, Enum):
    Missing = "Missing"
    All = "All"


class RuntimeEnv(_Model):
    pip: list[str] = Field(default_factory=list, description="Extra pip requirements installed for the job.")
    env_vars: dict[str, str] = Field(default_factory=dict, description="Environment variables of the job (no secrets).")
    working_dir: Optional[str] = Field(default=None, description="A working_dir URI Ray can fetch (s3://, gs://, https://).")
    py_modules: list[str] = Field(default_factory=list, description="py_modules URIs Ray can fetch.")


# ---------------------------------------------------------------- spec: the ray cluster


class WorkerType(str, Enum):
    cpu = "cpu"
    gpu = "gpu"


class LocalObjectReference(_Model):
    name: str = Field(min_length=1)


class SecretKeyRef(_Model):
    name: str = Field(min_length=1, description="Secret name, in the backfill's namespace.")
    key: str = Field(default="token", min_length=1, description="Key inside the Secret.")


class EnvFromSource(_Model):
    secret_ref: Optional[LocalObjectReference] = None
    config_map_ref: Optional[LocalObjectReference] = None
    prefix: Optional[str] = None


class Toleration(_Model):
    key: Optional[str] = None
    operator: Optional[str] = Field(default=None, pattern=r"^(Exists|Equal)$")
    value: Optional[str] = None
    effect: Optional[str] = Field(default=None, pattern=r"^(NoSchedule|PreferNoSchedule|NoExecute)$")
    toleration_seconds: Optional[int] = None


class HeadSpec(_Model):
    cpu: str = Field(default="1", pattern=QUANTITY_PATTERN)
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN)
    ray_start_params: dict[str, str] = Field(default_factory=dict)


class WorkerGroup(_Model):
    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=30)
    type: WorkerType = WorkerType.cpu
    replicas: int = Field(default=1, ge=0)
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=1, ge=0)
    cpu: str = Field(default="1", pattern=QUANTITY_PATTERN)
    memory: str = Field(default="2Gi", pattern=QUANTITY_PATTERN)
    gpu: int = Field(default=0, ge=0, description="nvidia.com/gpu per pod; must be > 0 exactly when type is gpu.")
    ray_start_params: dict[str, str] = Field(default_factory=dict)


class Autoscaling(_Model):
    enabled: bool = False
    idle_timeout_seconds: int = Field(default=60, ge=0)


class GcsFaultTolerance(_Model):
    redis_address: str = Field(min_length=1, description="host:port of an external Redis for Ray GCS fault tolerance.")
    redis_password_secret: Optional[SecretKeyRef] = None


class ClusterSpec(_Model):
    ray_version: str = Field(default="2.60.0")
    image: str = Field(default="rayproject/ray:2.60.0-py311")
    image_pull_policy: Optional[str] = Field(default=None, pattern=r"^(Always|IfNotPresent|Never)$")
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list)
    service_account_name: str = Field(default="geneva-ray-runner")
    head: HeadSpec = Field(default_factory=HeadSpec)
    worker_groups: list[WorkerGroup] = Field(
        default_factory=lambda: [WorkerGroup(name="cpu")], description="Worker groups; names must be unique."
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    env_from: list[EnvFromSource] = Field(default_factory=list)
    env: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Extra container env (Kubernetes EnvVar objects).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )
    volumes: list[dict[str, Any]] = Field(default_factory=list, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    volume_mounts: list[dict[str, Any]] = Field(default_factory=list, json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})
    tolerations: list[Toleration] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node selectors, added to the geneva group labels.")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    priority_class_name: Optional[str] = None
    gcs_fault_tolerance: Optional[GcsFaultTolerance] = None


class ExistingCluster(_Model):
    name: str = Field(min_length=1, description="A RayCluster in the backfill's namespace. Never patched or deleted by the operator.")


class CleanupPolicy(str, Enum):
    Always = "Always"
    OnSuccess = "OnSuccess"
    Never = "Never"


class Cleanup(_Model):
    policy: CleanupPolicy = CleanupPolicy.Always
    ttl_seconds_after_finished: int = Field(default=600, ge=0)


class AuthSpec(_Model):
    token_secret_ref: Optional[SecretKeyRef] = Field(
        default=None, description="Secret holding the Ray dashboard token (Ray token authentication)."
    )


class BackfillSpec(_Model):
    table: TableRef
    column: str = Field(pattern=COLUMN_PATTERN, max_length=255, description="Output column; created (nullable) if missing.")
    udf: Udf
    where: Optional[str] = Field(default=None, description="Optional SQL filter selecting the rows to compute.")
    mode: Mode = Field(default=Mode.Missing, description="Missing: rows not yet computed by this udf version. All: every selected row.")
    commit_every: int = Field(default=16, ge=1, description="Fragments per commit; partial results become visible as the job goes.")
    concurrency: Optional[int] = Field(default=None, ge=1, description="Most UDF tasks in flight at once (default: what the cluster fits).")
    cluster: Optional[ClusterSpec] = None
    existing_cluster: Optional[ExistingCluster] = None
    runtime_env: Optional[RuntimeEnv] = None
    auth: AuthSpec = Field(default_factory=AuthSpec)
    cleanup: Cleanup = Field(default_factory=Cleanup)
    backoff_limit: int = Field(default=2, ge=0, description="Retries; each resumes from checkpoints.")
    active_deadline_seconds: Optional[int] = Field(default=None, ge=1)
    startup_deadline_seconds: int = Field(default=900, ge=1, description="Longest wait for the cluster and job to start running.")
    suspend: bool = False

    @field_validator("column")
    @classmethod
    def _column_not_reserved(cls, v: str) -> str:
        if v.startswith("_geneva") or v.startswith("_row"):
            raise ValueError(f"column {v!r} uses a reserved prefix")
        return v


# ---------------------------------------------------------------- status


class Phase(str, Enum):
    Pending = "Pending"
    Provisioning = "Provisioning"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Suspended = "Suspended"


class Condition(_Model):
    type: str
    status: str = Field(pattern=r"^(True|False|Unknown)$")
    reason: str = ""
    message: str = ""
    last_transition_time: Optional[str] = None
    observed_generation: Optional[int] = None


class Progress(_Model):
    fragments_done: int = 0
    fragments_total: int = 0
    rows_done: int = 0
    rows_total: int = 0
    percent: int = Field(default=0, ge=0, le=100)
    rows_per_second: Optional[float] = None
    eta_seconds: Optional[int] = None
    updated_at: Optional[str] = None


class BackfillStatus(_Model):
    phase: Optional[Phase] = None
    conditions: list[Condition] = Field(default_factory=list)
    observed_generation: Optional[int] = None
    ray_cluster_name: Optional[str] = None
    dashboard_url: Optional[str] = Field(default=None, alias="dashboardURL")
    job_id: Optional[str] = None
    attempts: int = 0
    progress: Optional[Progress] = None
    rows: Optional[str] = Field(default=None, description="rows done/total, for the printer column.")
    table_version: Optional[int] = None
    udf_version: Optional[str] = None
    start_time: Optional[str] = None
    completion_time: Optional[str] = None
    reason: Optional[str] = None
    message: Optional[str] = None
    log_tail: Optional[str] = None
