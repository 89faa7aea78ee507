"""The status of a GenevaBackfill: what the operator writes (the spec is in models.py)."""
from __future__ import annotations

from enum import Enum
from typing import Optional

from pydantic import Field

from .base import _Model


class Phase(str, Enum):
    Pending = "Pending"
    Provisioning = "Provisioning"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Suspended = "Suspended"


class State(str, Enum):
    """Where the lifecycle of a backfill is (lifecycle/__init__.py has the table of states and
    their steps). The phase and the conditions are computed from it, never the other way."""

    New = "New"  # a run (or a resumed one) started in this reconcile; its start is not persisted yet
    WaitingForInputs = "WaitingForInputs"  # a Secret, an existingCluster or the column is not available yet
    CreatingCluster = "CreatingCluster"  # our RayCluster is being created
    WaitingForCluster = "WaitingForCluster"  # the RayCluster exists and is not ready (or is being recreated)
    Preparing = "Preparing"  # the cluster is ready; the run's start is recorded before the first submission
    Submitting = "Submitting"  # the job of this attempt is submitted and has not started running
    Running = "Running"  # the job runs
    Retrying = "Retrying"  # an attempt failed after the run ran; the next one is being prepared or started
    Suspending = "Suspending"  # spec.suspend: stopping the job, deleting our cluster
    Suspended = "Suspended"  # spec.suspend: nothing of ours runs
    Succeeded = "Succeeded"
    Failed = "Failed"


class ActionError(_Model):
    action: str = Field(description="The action the API server or Ray refused (CreateCluster, PatchCluster, SubmitJob).")
    reason: str = Field(description="CamelCase reason, e.g. SubmissionRejected or ClusterRejected.")
    field: str = Field(description="The spec field to fix, e.g. spec.runtimeEnv.")
    message: str = Field(default="", description="What the API server or Ray answered.")


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
    state: Optional[State] = Field(default=None, description="The operator's own state of the lifecycle, from which phase "
                                   "and conditions follow (for tools and debugging; phase is the stable summary).")
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
    cleanup_after: Optional[str] = Field(default=None, description="When the RayCluster this backfill created is deleted "
                                         "(spec.cleanup, RFC 3339); unset when it is kept or already deleted.")
    last_action_error: Optional[ActionError] = Field(default=None, description="What the API server or Ray refused when "
                                                     "the operator last acted; the next reconcile fails the backfill with it.")
