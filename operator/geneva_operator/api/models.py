"""The GenevaBackfill API: the one source of truth for spec and status.

The CRD under crds/ and the chart's copy are generated from these models (`make crds`);
the engine reads the part of `BackfillSpec` it needs (api.job_contract.BackfillWork). Field names are snake_case in Python and
camelCase on the wire, as Kubernetes users expect.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
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


@dataclass(frozen=True)
class Rule:
    """One cross-field rule, defined once and enforced twice: by the API server as a CEL
    `x-kubernetes-validations` entry on the model's schema, and by pydantic through `check`,
    so manifests validated without an API server (`geneva-backfill validate`, the operator
    reading an object) meet the same rules. `check` is None for transition rules (they need
    `oldSelf`, which only the API server has). `cel` sees the object after the API server
    applied the schema defaults, as `check` sees the model after pydantic applied them."""

    cel: str
    message: str
    check: Optional[Callable[[Any], bool]] = None
    field_path: Optional[str] = None  # e.g. ".replicas": where `kubectl` reports the error

    def to_cel(self) -> dict[str, str]:
        rule = {"rule": self.cel, "message": self.message}
        if self.field_path:
            rule["fieldPath"] = self.field_path
        return rule


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    # Cross-field rules of this model; see Rule.
    cel_rules: ClassVar[tuple[Rule, ...]] = ()

    def to_wire(self) -> dict[str, Any]:
        """camelCase dict without unset optional fields, as it would sit in the resource."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler(core_schema)
        if cls.cel_rules:
            handler.resolve_ref_schema(schema)["x-kubernetes-validations"] = [r.to_cel() for r in cls.cel_rules]
        return schema

    @model_validator(mode="after")
    def _check_rules(self) -> "_Model":
        broken = [r.message for r in type(self).cel_rules if r.check is not None and not r.check(self)]
        if broken:
            raise ValueError("; ".join(broken))
        return self


# ---------------------------------------------------------------- spec: the table and the udf


# Lance/object_store storage option keys that carry credentials (compared lower-cased).
# Secrets belong in Secrets (cluster.envFrom) or the pod identity, never in the resource.
SECRET_STORAGE_OPTION_KEYS = (
    # object_store's names and aliases: AmazonS3ConfigKey, GoogleConfigKey, AzureConfigKey.
    "aws_secret_access_key", "secret_access_key",
    "aws_session_token", "aws_token", "session_token", "token",
    "google_service_account_key", "service_account_key",
    "azure_storage_account_key", "azure_storage_access_key", "azure_storage_master_key",
    "master_key", "account_key", "access_key",
    "azure_storage_sas_key", "azure_storage_sas_token", "sas_key", "sas_token",
    "azure_storage_token", "bearer_token",
    "azure_storage_client_secret", "azure_client_secret", "client_secret",
    "password",
)


def _cel_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


class TableRef(_Model):
    uri: str = Field(
        min_length=1, max_length=2048, description="LanceDB database URI: a local path, s3://bucket/path or gs://bucket/path. Immutable."
    )
    name: str = Field(min_length=1, max_length=255, description="Table name inside the database. Immutable.")
    storage_options: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="Lance storage options (region, endpoint, ...). Never put secrets here: "
        "credentials come from the pod identity or from Secrets named in cluster.envFrom.",
    )

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.storageOptions) || self.storageOptions.all(k, !(k.lowerAscii() in "
            + _cel_list(SECRET_STORAGE_OPTION_KEYS)
            + "))",
            message="storageOptions must not hold credentials (secret keys, session tokens, account keys): "
            "put them in a Secret and name it in cluster.envFrom, or use the pod identity",
            check=lambda t: not any(k.lower() in SECRET_STORAGE_OPTION_KEYS for k in t.storage_options),
            field_path=".storageOptions",
        ),
        # A backfill is bound to one table and column: its checkpoints, status and progress are
        # about them. A new udf version is a new run of the same backfill, so `udf` stays mutable.
        Rule(cel="self.uri == oldSelf.uri", message="uri is immutable: create another GenevaBackfill", field_path=".uri"),
        Rule(cel="self.name == oldSelf.name", message="name is immutable: create another GenevaBackfill", field_path=".name"),
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
    resources: UdfResources = Field(default_factory=UdfResources, description="Ray resources reserved by each UDF task.")
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


class CleanupPolicy(str, Enum):
    Always = "Always"
    OnSuccess = "OnSuccess"
    Never = "Never"


class Cleanup(_Model):
    policy: CleanupPolicy = Field(
        default=CleanupPolicy.Always,
        description="When to delete the RayCluster after the run: Always, OnSuccess (keep a failed one to debug) or Never.",
    )
    ttl_seconds_after_finished: int = Field(default=600, ge=0, description="Seconds to wait after the run before deleting.")


class AuthSpec(_Model):
    token_secret_ref: Optional[SecretKeyRef] = Field(
        default=None, description="Secret holding the Ray dashboard token (Ray token authentication)."
    )


def unreserved_column(v: str) -> str:
    """The engine's own columns (_geneva*) and Lance's (_rowid, _rowaddr) cannot be written."""
    if v.startswith("_geneva") or v.startswith("_row"):
        raise ValueError(f"column {v!r} uses a reserved prefix")
    return v


class BackfillSpec(_Model):
    table: TableRef = Field(description="The LanceDB table to backfill.")
    column: str = Field(
        pattern=COLUMN_PATTERN, max_length=255, description="Output column; created (nullable) if missing. Immutable."
    )
    udf: Udf = Field(description="The function computing the column. A new udf.version starts a new run.")
    where: Optional[str] = Field(default=None, description="Optional SQL filter selecting the rows to compute.")
    mode: Mode = Field(default=Mode.Missing, description="Missing: rows not yet computed by this udf version. All: every selected row.")
    commit_every: int = Field(default=16, ge=1, description="Fragments per commit; partial results become visible as the job goes.")
    concurrency: Optional[int] = Field(default=None, ge=1, description="Most UDF tasks in flight at once (default: what the cluster fits).")
    cluster: Optional[ClusterSpec] = Field(
        default=None, description="A RayCluster created for this backfill. Exactly one of cluster and existingCluster."
    )
    existing_cluster: Optional[ExistingCluster] = Field(
        default=None, description="Run on a RayCluster that already exists. Exactly one of cluster and existingCluster."
    )
    runtime_env: Optional[RuntimeEnv] = Field(default=None, description="Ray runtime environment of the job.")
    auth: AuthSpec = Field(default_factory=AuthSpec, description="Authentication to the Ray cluster.")
    cleanup: Cleanup = Field(default_factory=Cleanup, description="What happens to the RayCluster when the run ends.")
    backoff_limit: int = Field(default=2, ge=0, description="Retries; each resumes from checkpoints.")
    active_deadline_seconds: Optional[int] = Field(default=None, ge=1, description="Longest run, retries included; then the backfill fails.")
    startup_deadline_seconds: int = Field(default=900, ge=1, description="Longest wait for the cluster and job to start running, including "
        "for a missing token Secret or existingCluster to appear.")
    suspend: bool = Field(default=False, description="Stop the job (keeping its checkpoints) until set back to false.")

    cel_rules: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="has(self.cluster) != has(self.existingCluster)",
            message="exactly one of cluster and existingCluster must be set",
            check=lambda s: (s.cluster is None) != (s.existing_cluster is None),
        ),
        Rule(
            cel="!has(self.cluster) || !(self.udf.resources.gpu > 0.0) "
            "|| self.cluster.workerGroups.exists(g, g.type == 'gpu')",
            message="udf.resources.gpu > 0 needs a worker group of type gpu in cluster.workerGroups",
            check=lambda s: s.cluster is None
            or not s.udf.resources.gpu > 0
            or any(g.type == WorkerType.gpu.value for g in s.cluster.worker_groups),
            field_path=".udf.resources.gpu",
        ),
        Rule(
            cel="self.column == oldSelf.column",
            message="column is immutable: create another GenevaBackfill",
            field_path=".column",
        ),
    )

    _column_not_reserved = field_validator("column")(unreserved_column)


# ---------------------------------------------------------------- status


class Phase(str, Enum):
    Pending = "Pending"
    Provisioning = "Provisioning"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Suspended = "Suspended"


class Condition(_Model):
    type: str = Field(description="ClusterReady, JobSubmitted, Progressing, Complete or Failed.")
    status: str = Field(pattern=r"^(True|False|Unknown)$", description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason of the last transition.")
    message: str = Field(default="", description="Human-readable detail.")
    last_transition_time: Optional[str] = Field(default=None, description="When status last changed (RFC 3339).")
    observed_generation: Optional[int] = Field(default=None, description="metadata.generation this condition is about.")


class Progress(_Model):
    fragments_done: int = Field(default=0, description="Fragments computed (committed, or checkpointed for a resume).")
    fragments_total: int = Field(default=0, description="Fragments the run has to compute.")
    rows_done: int = Field(default=0, description="Rows computed (committed, or checkpointed for a resume).")
    rows_total: int = Field(default=0, description="Rows the run has to compute.")
    fragments_committed: Optional[int] = Field(
        default=None, description="Of the fragments done, those committed to the table: their selected rows hold "
        "status.udfVersion, every other row what it held before the run (what a failed run leaves).")
    rows_committed: Optional[int] = Field(default=None, description="Rows of the committed fragments this run computed.")
    percent: int = Field(default=0, ge=0, le=100, description="rowsDone / rowsTotal, in percent.")
    rows_per_second: Optional[float] = Field(default=None, description="Recent throughput.")
    eta_seconds: Optional[int] = Field(default=None, description="Estimated seconds to completion.")
    updated_at: Optional[str] = Field(default=None, description="When the job last reported progress (RFC 3339).")


class BackfillStatus(_Model):
    phase: Optional[Phase] = Field(default=None, description="Pending, Provisioning, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Standard conditions: ClusterReady, JobSubmitted, Progressing, Complete, Failed.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    observed_generation: Optional[int] = Field(default=None, description="metadata.generation the status is about.")
    ray_cluster_name: Optional[str] = Field(default=None, description="The RayCluster the job runs on.")
    dashboard_url: Optional[str] = Field(default=None, alias="dashboardURL", description="Ray dashboard of that cluster.")
    job_id: Optional[str] = Field(default=None, description="Ray job submission id of the current attempt.")
    attempts: int = Field(default=0, description="Jobs submitted so far.")
    progress: Optional[Progress] = Field(default=None, description="Progress of the current run.")
    rows: Optional[str] = Field(default=None, description="rows done/total, for the printer column.")
    table_version: Optional[int] = Field(default=None, description="Table version of the last commit.")
    udf_version: Optional[str] = Field(default=None, description="udf.version of the current or last run.")
    start_time: Optional[str] = Field(default=None, description="When the current run started (RFC 3339).")
    completion_time: Optional[str] = Field(default=None, description="When the last run finished (RFC 3339).")
    reason: Optional[str] = Field(default=None, description="Reason of the current phase (CamelCase).")
    message: Optional[str] = Field(default=None, description="Detail of the current phase.")
    log_tail: Optional[str] = Field(default=None, description="Last lines of the driver log of a failed job.")
