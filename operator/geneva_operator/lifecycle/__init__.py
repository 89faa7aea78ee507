"""The lifecycle of a GenevaBackfill: one explicit, pure state machine.

`decide(observed) -> Decision`. The input is the stored status (its `state` above all) and
what the handlers observed, as typed facts (facts.py): the spec, the RayCluster, the Ray job
of the current attempt, the problems met (a missing Secret, a busy column, a refused token,
an action the API server or Ray refused last time), the clock. The output is the whole next
status and the actions the handlers must execute. No I/O, no clock, no randomness here:
every transition is a unit test.

The state is one field, `status.state`; phase and conditions are computed from it and never
read back. One reconcile runs the guards every state shares, once, in this order:

    deleting              -> finalize: stop the job, delete our cluster, release the finalizer
    spec does not validate-> Failed
    no run for udf.version-> New (a run starts: first sight, or a new udf.version)
    Succeeded | Failed    -> finished (below); nothing else applies to a finished run
    spec.suspend          -> suspend: Suspending until nothing of ours runs, then Suspended
    Suspending|Suspended  -> New (resumed: a new run segment, same attempt)
    a problem (ranked in facts.blocking) -> Failed, or WaitingForInputs while it may clear
                             by itself and nothing was submitted
    deadlines             -> Failed (activeDeadlineSeconds; startupDeadlineSeconds while starting)

then one dispatch from the state to its step (machine.STEPS):

    state              phase         step
    New                Pending       start_attempt: converge the cluster; when ready, submit
    WaitingForInputs   Pending       start_attempt
    CreatingCluster    Provisioning  start_attempt
    WaitingForCluster  Provisioning  start_attempt
    Preparing          Provisioning  start_attempt (the run start is persisted: now submit)
    Submitting         Provisioning  follow_attempt: PENDING stays, RUNNING -> Running, not
                                     found -> submitted again (same id), failed ->
                                     WaitingForCluster (retry) | Failed
    Running            Running       follow_attempt: SUCCEEDED -> Succeeded, failed or cluster
                                     lost -> Retrying | Failed (backoffLimit)
    Retrying           Running       retry: recreate an outdated cluster, submit the next
                                     attempt, follow it (as Submitting) until RUNNING -> Running
    Suspending         Suspended     suspend
    Suspended          Suspended     suspend (settled: not polled)
    Succeeded|Failed   as named      finished: delete our cluster when spec.cleanup (as it is
                                     now) says (status.cleanupAfter), until it is seen gone

A *run* is one computation of `spec.udf.version`; it restarts when resumed from suspension.
An *attempt* is one Ray job of a run; a failed attempt is retried up to `backoffLimit` times,
and the engine resumes from its checkpoints. `Decision.requeue_after` says when to look again;
the kopf timers only ask whether the stored state is one that polls (machine.polls).

The handlers write the decided status before they act, conditional on the resourceVersion
the decision was made on (handlers/backfill.py): a decision on an outdated copy of the
resource is dropped whole, actions included. So the status may say an action was taken that
never was (the operator stopped, or the action failed, between the two): every state takes
its action again until it sees the effect. A submitted job Ray does not know is submitted
again under the same id, a cluster to delete is deleted until it is seen gone.

Crash safety: the submission id is a pure function of persisted status,
`geneva-<uid[:8]>-<run start>-<attempt>`, and the handlers GET it before submitting, so a
restarted operator finds the job it already submitted. The run start is part of the id so
that a new run (or a resume) never collides with a job of an older run still known to the
same Ray cluster. For that, a job is never submitted in the reconcile that (re)starts the
run: the run start must be persisted first (state Preparing). Cluster names are
deterministic and creation is create-or-get, so a repeated CreateCluster is harmless.
`existingCluster` is never patched or deleted, only its job is stopped.

A status written by an operator from before `state` existed is adopted (adopt.py).
"""
from ..api.models import State
from .actions import Action, CreateCluster, Decision, DeleteCluster, PatchCluster, RecordEvent, StopJob, SubmitJob
from .facts import (
    ActionRefused,
    ClusterView,
    ColumnHeld,
    ExistingClusterMissing,
    JobUnknown,
    JobView,
    KubeRayTooOld,
    KubeRayUnknown,
    Needs,
    Observed,
    Problem,
    RayAuthRefused,
    SecretMissing,
    SpecInvalid,
    blocking,
    kuberay_problem,
)
from .machine import STEPS, decide, follows_job, needs, new_run_needed, polls, state_of, waits_for_cleanup
from .step import (
    CLUSTER_DELETED,
    CLUSTER_OUTDATED,
    CLUSTER_READY,
    COMPLETE,
    CONDITION_TYPES,
    ENGINE_NOT_IN_IMAGE,
    FAILED,
    FINISHED,
    JOB_SUBMITTED,
    PHASE,
    PROGRESSING,
    SUSPENDED,
    SUSPENDED_IDLE,
    SUSPENDING,
    condition,
)
from .text import (
    LOG_TAIL_BYTES,
    LOG_TAIL_LINES,
    bound_log_tail,
    failure_summary,
    format_time,
    human_count,
    parse_time,
    progress_from,
    rows_column,
    submission_id,
    utcnow,
)

__all__ = [name for name in dir() if not name.startswith("_")]
