"""The GenevaBackfill API: the one source of truth for spec and status.

The CRD under crds/ and the chart's copy are generated from these models (`make crds`);
the engine reads the part of `BackfillSpec` it needs (api.job_contract.BackfillWork). Field names are snake_case in Python and
camelCase on the wire, as Kubernetes users expect. The spec's RayCluster is in cluster_spec.py,
the status in status.py, what all models share in base.py; this module imports them all.
"""
from __future__ import annotations

from enum import Enum
from typing import Any, ClassVar, Optional

from pydantic import Field, field_validator

from .arrow_types import ArrowTypeError, parse_arrow_type
from .base import DNS_LABEL_PATTERN, QUANTITY_PATTERN, Rule, _Model  # noqa: F401  (re-exported)
from .cluster_spec import (  # noqa: F401  (re-exported: one import for the whole spec)
    MAX_WORKER_GROUPS, AutoscalerVersion, Autoscaling, ClusterSpec, EnvFromSource, ExistingCluster, GcsFaultTolerance, HeadSpec,
    LocalObjectReference, SecretKeyRef, Toleration, WorkerGroup, WorkerType,
)

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

COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
FUNCTION_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$"


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


from .status import ActionError, BackfillStatus, Condition, Phase, Progress, State  # noqa: E402,F401  (one import for both)
