"""The vocabulary of the status (condition types, reasons, the phase of each state) and the
building blocks every step writes it with."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from ..api.job_contract import ResultReport
from ..api.models import BackfillSpec, BackfillStatus, CleanupPolicy, Condition, Phase, State
from .actions import Action, Decision, RecordEvent, StopJob
from .facts import JobUnknown, JobView, Observed
from .text import bound_log_tail, format_time, parse_time

CLUSTER_READY = "ClusterReady"
JOB_SUBMITTED = "JobSubmitted"
PROGRESSING = "Progressing"
COMPLETE = "Complete"
FAILED = "Failed"
SUSPENDED = "Suspended"
CLUSTER_OUTDATED = "ClusterOutdated"  # only once a spec change needed a recreate (cluster/update.py)
CONDITION_TYPES = (CLUSTER_READY, JOB_SUBMITTED, PROGRESSING, COMPLETE, FAILED, SUSPENDED, CLUSTER_OUTDATED)

# Reasons other code relies on (the rest are free-form CamelCase, for humans).
CLUSTER_DELETED = "Deleted"  # ClusterReady: our cluster is gone (cleanup, suspend)
SUSPENDING = "Suspending"  # Suspended: stopping the job / deleting the cluster in progress
SUSPENDED_IDLE = "Suspended"  # Suspended: nothing left running; no polling needed
ENGINE_NOT_IN_IMAGE = "EngineNotInImage"  # Failed: the job could not import the engine (no retry)

# The phase each state shows: the one summary users and tools read.
PHASE = {
    State.New: Phase.Pending,
    State.WaitingForInputs: Phase.Pending,
    State.CreatingCluster: Phase.Provisioning,
    State.WaitingForCluster: Phase.Provisioning,
    State.Preparing: Phase.Provisioning,
    State.Submitting: Phase.Provisioning,
    State.Running: Phase.Running,
    State.Retrying: Phase.Running,
    State.Suspending: Phase.Suspended,
    State.Suspended: Phase.Suspended,
    State.Succeeded: Phase.Succeeded,
    State.Failed: Phase.Failed,
}
FINISHED = frozenset({State.Succeeded, State.Failed})
STARTING = frozenset({State.New, State.WaitingForInputs, State.CreatingCluster, State.WaitingForCluster,
                      State.Preparing, State.Submitting})  # bounded by spec.startupDeadlineSeconds
RAN = frozenset({State.Running, State.Retrying})  # a job of this run has run: the phase stays Running


def condition(status: BackfillStatus, type_: str) -> Optional[Condition]:
    return next((c for c in status.conditions if c.type == type_), None)


def owned(spec: Optional[BackfillSpec]) -> bool:
    # The CRD guarantees exactly one of cluster / existingCluster.
    return spec is not None and spec.existing_cluster is None


class Step:
    """Accumulates one reconcile's next state, status and actions."""

    def __init__(self, o: Observed, state: State):
        self.o = o
        self.spec = o.spec
        self.old = o.status
        self.status = o.status.model_copy(deep=True)
        self.state = state
        self.shown: Optional[Phase] = PHASE[state]  # the phase the stored status shows
        self.actions: list[Action] = []
        self.now = format_time(o.now)
        self.requeue_after: Optional[float] = None

    # -- building blocks

    def cond(self, type_: str, status: str, reason: str, message: str = "") -> None:
        current = condition(self.status, type_)
        if current is None:
            self.status.conditions.append(
                Condition(type=type_, status=status, reason=reason, message=message,
                          last_transition_time=self.now, observed_generation=self.o.generation)
            )
            return
        if current.status != status:
            current.last_transition_time = self.now
        current.status, current.reason, current.message = status, reason, message

    def event(self, type_: str, reason: str, message: str) -> None:
        self.actions.append(RecordEvent(type_, reason, message))

    def to(self, state: State, reason: str, message: str = "", warning: bool = False, event: bool = True) -> None:
        """Move to `state`; a change of the phase it shows is an Event."""
        self.state = state
        phase = PHASE[state]
        self.status.reason, self.status.message = reason, message or None
        if phase != self.shown and event:
            self.event("Warning" if warning else "Normal", reason, message or f"phase {phase.value}")
        self.shown = phase

    def starting(self, state: State, reason: str, message: str = "") -> None:
        """`to(state)` while no job of this run has run; after, the phase stays Running and
        only the conditions say what is being waited for."""
        if self.state not in RAN:
            self.to(state, reason, message)

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def decision(self, finalized: bool = False) -> Decision:
        self.status.state = self.state.value
        self.status.phase = PHASE[self.state].value
        self.status.observed_generation = self.o.generation
        for c in self.status.conditions:
            c.observed_generation = self.o.generation
        order = {t: i for i, t in enumerate(CONDITION_TYPES)}
        self.status.conditions.sort(key=lambda c: order.get(c.type, len(order)))
        return Decision(status=self.status, actions=tuple(self.actions), finalized=finalized,
                        requeue_after=self.requeue_after)

    @property
    def owned(self) -> bool:
        return owned(self.spec)

    def job_may_run(self) -> bool:
        job = self.o.job
        known_over = job is not None and job.submission_id == self.status.job_id and (
            job.state.terminal or job.state == JobUnknown.NOT_FOUND
        )
        return bool(self.status.job_id) and not known_over and self.state not in FINISHED

    # -- terminal transitions

    def fail(self, reason: str, message: str, log_tail: Optional[str] = None) -> Decision:
        if self.job_may_run():
            self.act(StopJob(self.status.job_id))
        self.status.completion_time = self.now
        if log_tail:
            self.status.log_tail = bound_log_tail(log_tail)
        self.cond(FAILED, "True", reason, message)
        self.cond(COMPLETE, "False", reason, message)
        self.cond(PROGRESSING, "False", reason, message)
        self.to(State.Failed, reason, message, warning=True)
        return self.finished()

    def succeed(self, job: JobView) -> Decision:
        self.status.completion_time = self.now
        if isinstance(job.progress, ResultReport) and job.progress.committed_version is not None:
            self.status.table_version = job.progress.committed_version
        message = f"attempt {self.status.attempts}: {self.status.rows or 'done'}"
        self.cond(COMPLETE, "True", "JobSucceeded", message)
        self.cond(FAILED, "False", "JobSucceeded")
        self.cond(PROGRESSING, "False", "JobSucceeded", message)
        self.to(State.Succeeded, reason="JobSucceeded", message=message)
        return self.finished()

    def finished(self) -> Decision:
        due = cleanup_time(self.spec, self.state, self.status)
        self.status.cleanup_after = format_time(due) if due is not None else None
        return self.decision()


def cleanup_time(spec: Optional[BackfillSpec], state: State, status: BackfillStatus) -> Optional[datetime]:
    """When the cluster we created goes after the run's end, by spec.cleanup as it is now (an
    edit applies after the run too), or None: kept. Whether it is gone yet is observed."""
    if not owned(spec) or not status.ray_cluster_name or state not in FINISHED:
        return None
    policy = spec.cleanup.policy
    if policy == CleanupPolicy.Always.value or (policy == CleanupPolicy.OnSuccess.value and state == State.Succeeded):
        end = parse_time(status.completion_time) or datetime.min.replace(tzinfo=timezone.utc)
        return end + timedelta(seconds=spec.cleanup.ttl_seconds_after_finished)
    return None
