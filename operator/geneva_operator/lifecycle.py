"""The lifecycle of a GenevaBackfill: one explicit, pure state machine.

`decide(observed) -> Decision`. The input is what the handlers observed (spec, current
status, the RayCluster, the Ray job of the current attempt, the clock); the output is the
whole next status (phase, standard conditions, counters, progress) and the actions the
handlers must execute (create/patch/delete the cluster, submit/stop the job, events).
No I/O, no clock, no randomness here: every transition is a unit test.

Phases: Pending -> Provisioning -> Running -> Succeeded | Failed, and Suspended from any
active phase. A *run* is one computation of `spec.udf.version`; it starts when the status
has no run for that version (first sight, or a new udf version re-applied) and restarts
when resumed from suspension. An *attempt* is one Ray job of a run; a failed attempt is
retried up to `backoffLimit` times, and the engine resumes from its checkpoints.

Crash safety (the operator may die between any two steps, and the status patch is the last
step of a reconcile): the submission id is a pure function of persisted status,
`geneva-<uid[:8]>-<run start>-<attempt>`, and the handlers GET it before submitting, so a
restarted operator finds the job it already submitted. The run start is part of the id so
that a new run (or a resume) never collides with a job of an older run still known to the
same Ray cluster. For that, a job is never submitted in the reconcile that (re)starts the
run: the run start must be persisted first. Cluster names are deterministic and creation
is create-or-get, so a repeated CreateCluster is harmless.

Deletion: `decide` with `deleting=True` stops the job and deletes the cluster we created;
`Decision.finalized` says when the finalizer may go (our cluster is gone). `existingCluster`
is never patched or deleted, only its job is stopped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Any, Optional, Union

from .api.job_contract import ProgressReport, RayJobState, ResultReport, missing_engine_module
from .api.models import BackfillSpec, BackfillStatus, CleanupPolicy, Condition, Phase, Progress
from .cluster.pods import POD_PROBLEM_REASONS, PodProblem

# ---------------------------------------------------------------- vocabulary

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

ACTIVE_PHASES = frozenset({Phase.Pending.value, Phase.Provisioning.value, Phase.Running.value})
FINISHED_PHASES = frozenset({Phase.Succeeded.value, Phase.Failed.value})

LOG_TAIL_LINES = 30
LOG_TAIL_BYTES = 4096


class JobUnknown(str, Enum):
    """The two ways of not knowing the RayJobState of a submission id."""

    NOT_FOUND = "NOT_FOUND"  # the dashboard answered: no such submission id
    UNREACHABLE = "UNREACHABLE"  # the dashboard did not answer (yet)

    @property
    def terminal(self) -> bool:
        return False


# ---------------------------------------------------------------- input


@dataclass(frozen=True)
class ClusterView:
    """The RayCluster as observed: absent, or present with its readiness."""

    exists: bool
    ready: bool = False
    owned: bool = False  # its ownerReferences name this backfill
    message: str = ""  # why it is not ready (KubeRay conditions), for humans
    patch: Optional[dict[str, Any]] = None  # in-place patch converging an owned cluster to the spec
    recreate: tuple[str, ...] = ()  # changed fields an in-place patch cannot apply
    image: Optional[str] = None  # of its head pod: the image the job runs in
    # Why its pods cannot start (cluster/pods.py); before a job is submitted it keeps the
    # cluster from counting as ready: a head without workers would take the job and hang.
    pod_problem: Optional[PodProblem] = None


@dataclass(frozen=True)
class JobView:
    submission_id: str
    state: Union[RayJobState, JobUnknown]
    message: str = ""
    progress: Optional[ProgressReport] = None  # the job's newest report (a ResultReport at the end)
    log_tail: Optional[str] = None  # driver log tail, read when the job is terminal


@dataclass(frozen=True)
class InputError:
    """Bad input the API server's schema cannot catch (a missing Secret or RayCluster)."""

    field: str  # e.g. "spec.auth.tokenSecretRef"
    reason: str  # CamelCase
    message: str
    # A problem that may clear by itself: a referenced object not there yet (`kubectl apply
    # -f dir/` or a GitOps sync creates the backfill and its Secret in no particular order),
    # or the column busy with another backfill (columns.py). Before a job is submitted, the
    # run waits for it, bounded by startupDeadlineSeconds, as a Pod waits for a missing
    # Secret, instead of failing at once.
    may_clear: bool = False


@dataclass(frozen=True)
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: Optional[BackfillSpec]  # None when the stored spec does not validate (see input_error)
    status: BackfillStatus
    now: datetime
    cluster_name: str  # ours (deterministic) or spec.existingCluster.name
    dashboard_url: Optional[str] = None
    deleting: bool = False
    cluster: Optional[ClusterView] = None  # None: not observed (see `needs`)
    job: Optional[JobView] = None  # the job named by status.jobId, if observed
    input_error: Optional[InputError] = None
    default_image: Optional[str] = None  # the operator's, for spec.cluster.image unset


@dataclass(frozen=True)
class Needs:
    """What the handlers must observe before calling `decide` (only what it will use)."""

    cluster: bool = False
    job_id: Optional[str] = None
    inputs: bool = False  # check referenced objects (auth Secret) for InputError

    @property
    def anything(self) -> bool:
        return self.cluster or self.job_id is not None or self.inputs


# ---------------------------------------------------------------- output


@dataclass(frozen=True)
class CreateCluster:
    name: str


@dataclass(frozen=True)
class PatchCluster:
    name: str
    patch: dict[str, Any]


@dataclass(frozen=True)
class DeleteCluster:
    name: str


@dataclass(frozen=True)
class SubmitJob:
    submission_id: str
    attempt: int


@dataclass(frozen=True)
class StopJob:
    submission_id: str


@dataclass(frozen=True)
class RecordEvent:
    type: str  # Normal | Warning
    reason: str
    message: str


Action = Union[CreateCluster, PatchCluster, DeleteCluster, SubmitJob, StopJob, RecordEvent]


@dataclass(frozen=True)
class Decision:
    status: BackfillStatus
    actions: tuple[Action, ...] = ()
    finalized: bool = False  # deleting: nothing of ours is left, the finalizer may go


# ---------------------------------------------------------------- small pure helpers


def utcnow() -> datetime:
    """The clock, for the handlers (decide itself never reads it)."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: Optional[str]) -> Optional[datetime]:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def submission_id(uid: str, run_start: str, attempt: int) -> str:
    """Deterministic and unique per (resource, run, attempt): see the module docstring."""
    stamp = format_time(parse_time(run_start)).replace("-", "").replace(":", "").lower()[:-1]
    return f"geneva-{uid[:8]}-{stamp}-{attempt}"


# Ray echoes the entrypoint, whose argument is the whole spec in base64: kilobytes that say
# nothing to a reader of the status (the spec is on the resource itself).
_ENTRYPOINT_SPEC = re.compile(r"(-m [\w.]+ )[A-Za-z0-9_-]{64,}")
# Ray's message for a failed entrypoint repeats the log, which status.logTail already holds.
_RAY_LOG_ECHO = ", last available logs"
# The engine's one-line report of why it stopped, and Python's last exception line.
_ERROR_LINE = re.compile(r"^(?:error: .+|[A-Z]\w*(?:Error|Exception): .+)$")


def failure_summary(message: str, log_tail: Optional[str]) -> str:
    """Ray's reason without its copy of the log, plus the line of the log that says what failed."""
    head = (message or "").split(_RAY_LOG_ECHO, 1)[0].strip()
    lines = [ln.strip() for ln in (log_tail or message or "").splitlines()]
    error = next((ln for ln in reversed(lines) if _ERROR_LINE.match(ln)), "")
    return ": ".join(part for part in (head, _ENTRYPOINT_SPEC.sub(r"\1<spec>", error)) if part)


def bound_log_tail(text: Optional[str], lines: int = LOG_TAIL_LINES, max_bytes: int = LOG_TAIL_BYTES) -> Optional[str]:
    """The last `lines` lines, at most `max_bytes` UTF-8 bytes (cut at a line start if possible)."""
    if not text:
        return None
    text = _ENTRYPOINT_SPEC.sub(r"\1<spec>", text)
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    raw = tail.encode()
    if len(raw) > max_bytes:
        raw = raw[-max_bytes:]
        cut = raw.find(b"\n")
        raw = raw[cut + 1:] if 0 <= cut < len(raw) - 1 else raw
        tail = raw.decode(errors="ignore")
    return tail


def human_count(n: int) -> str:
    for unit, size in (("B", 1_000_000_000), ("M", 1_000_000), ("K", 1_000)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def rows_column(p: Progress) -> str:
    return f"{human_count(p.rows_done)}/{human_count(p.rows_total)}"


def progress_from(report: ProgressReport, previous: Optional[Progress], now: datetime) -> Progress:
    """Status progress from the job's newest report (see api.job_contract)."""
    done, total = report.rows_done, report.rows_total
    frag_done, frag_total = report.fragments_done, report.fragments_total
    if total > 0:
        percent = min(100, done * 100 // total)
    elif frag_total > 0:
        percent = min(100, frag_done * 100 // frag_total)
    else:
        percent = 100 if isinstance(report, ResultReport) and report.committed_version is not None else 0
    committed = report.fragments_committed, report.rows_committed
    unchanged = previous is not None and (previous.rows_done, previous.fragments_done) == (done, frag_done) \
        and (previous.fragments_committed, previous.rows_committed) == committed
    if unchanged and previous.rows_total == total and previous.fragments_total == frag_total:
        return previous  # nothing new: keep updatedAt (and avoid a status patch)
    rate = report.rows_per_second
    if rate is None and previous is not None and previous.updated_at and done > previous.rows_done:
        elapsed = (now - parse_time(previous.updated_at)).total_seconds()
        rate = (done - previous.rows_done) / elapsed if elapsed > 0 else None
    rate = round(float(rate), 1) if rate is not None else None
    eta = int((total - done) / rate) if rate and total > done else (0 if total and done >= total else None)
    return Progress(
        fragments_done=frag_done,
        fragments_total=frag_total,
        rows_done=done,
        rows_total=total,
        percent=percent,
        rows_per_second=rate,
        eta_seconds=eta,
        updated_at=format_time(now),
        fragments_committed=committed[0],
        rows_committed=committed[1],
    )


def condition(status: BackfillStatus, type_: str) -> Optional[Condition]:
    return next((c for c in status.conditions if c.type == type_), None)


def _owned(spec: Optional[BackfillSpec]) -> bool:
    # The CRD guarantees exactly one of cluster / existingCluster.
    return spec is not None and spec.existing_cluster is None


def cleanup_pending(spec: Optional[BackfillSpec], status: BackfillStatus) -> bool:
    """A finished run whose cluster we created still has to be deleted (now or after the TTL)."""
    if status.phase not in FINISHED_PHASES or not _owned(spec) or not status.ray_cluster_name:
        return False
    policy = spec.cleanup.policy
    applies = policy == CleanupPolicy.Always.value or (
        policy == CleanupPolicy.OnSuccess.value and status.phase == Phase.Succeeded.value
    )
    ready = condition(status, CLUSTER_READY)
    return applies and not (ready is not None and ready.reason == CLUSTER_DELETED)


def cleanup_due_at(spec: BackfillSpec, status: BackfillStatus) -> Optional[datetime]:
    if not cleanup_pending(spec, status):
        return None
    finished = parse_time(status.completion_time) or datetime.min.replace(tzinfo=timezone.utc)
    return finished + timedelta(seconds=spec.cleanup.ttl_seconds_after_finished)


def waiting_for_cleanup(spec: Optional[BackfillSpec], status: BackfillStatus) -> bool:
    """Finished, with nothing left but deleting our cluster when its TTL runs out: a slow
    timer serves that, so hundreds of finished backfills do not tick every second."""
    return spec is not None and not new_run_needed(spec, status) and cleanup_pending(spec, status)


def new_run_needed(spec: BackfillSpec, status: BackfillStatus) -> bool:
    return status.udf_version != spec.udf.version or not status.start_time


def should_poll(spec: Optional[BackfillSpec], status: BackfillStatus) -> bool:
    """Whether the periodic reconcile must run: only while something can change without a
    spec change (finished or settled-suspended resources cost no API requests at all)."""
    if spec is None:
        return status.phase != Phase.Failed.value
    if status.phase is None or status.phase in ACTIVE_PHASES or new_run_needed(spec, status):
        return True
    if status.phase == Phase.Suspended.value:
        suspended = condition(status, SUSPENDED)
        return not spec.suspend or suspended is None or suspended.reason != SUSPENDED_IDLE
    return cleanup_pending(spec, status)


def needs(spec: Optional[BackfillSpec], status: BackfillStatus, now: datetime, deleting: bool = False) -> Needs:
    if deleting:
        return Needs(cluster=True)
    if spec is None:
        return Needs()
    if status.phase in FINISHED_PHASES and not new_run_needed(spec, status):
        return Needs()  # cleanup needs no observation: deletion is idempotent
    if status.phase == Phase.Suspended.value and spec.suspend and not should_poll(spec, status):
        return Needs()
    return Needs(cluster=True, job_id=status.job_id, inputs=True)


# ---------------------------------------------------------------- the machine


class _Step:
    """Accumulates one reconcile's next status and actions."""

    def __init__(self, o: Observed):
        self.o = o
        self.spec = o.spec
        self.old = o.status
        self.status = o.status.model_copy(deep=True)
        self.actions: list[Action] = []
        self.now = format_time(o.now)

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

    def phase(self, phase: Phase, reason: str, message: str = "", warning: bool = False) -> None:
        changed = self.status.phase != phase.value
        self.status.phase, self.status.reason, self.status.message = phase.value, reason, message or None
        if changed:
            self.event("Warning" if warning else "Normal", reason, message or f"phase {phase.value}")

    def act(self, action: Action) -> None:
        self.actions.append(action)

    def decision(self, finalized: bool = False) -> Decision:
        self.status.observed_generation = self.o.generation
        for c in self.status.conditions:
            c.observed_generation = self.o.generation
        order = {t: i for i, t in enumerate(CONDITION_TYPES)}
        self.status.conditions.sort(key=lambda c: order.get(c.type, len(order)))
        return Decision(status=self.status, actions=tuple(self.actions), finalized=finalized)

    @property
    def owned(self) -> bool:
        return _owned(self.spec)

    def job_may_run(self) -> bool:
        job = self.o.job
        known_over = job is not None and job.submission_id == self.status.job_id and (
            job.state.terminal or job.state == JobUnknown.NOT_FOUND
        )
        finished = self.status.phase in FINISHED_PHASES
        return bool(self.status.job_id) and not known_over and not finished

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
        self.phase(Phase.Failed, reason, message, warning=True)
        return self.decision()

    def succeed(self, job: JobView) -> Decision:
        self.status.completion_time = self.now
        if job.progress is not None:
            if isinstance(job.progress, ResultReport) and job.progress.committed_version is not None:
                self.status.table_version = job.progress.committed_version
        message = f"attempt {self.status.attempts}: {self.status.rows or 'done'}"
        self.cond(COMPLETE, "True", "JobSucceeded", message)
        self.cond(FAILED, "False", "JobSucceeded")
        self.cond(PROGRESSING, "False", "JobSucceeded", message)
        self.phase(Phase.Succeeded, "JobSucceeded", message)
        return self.decision()


def decide(o: Observed) -> Decision:
    s = _Step(o)
    if o.deleting:
        return _finalize(s)
    if o.spec is None:
        err = o.input_error or InputError("spec", "InvalidSpec", "spec does not validate")
        if s.status.phase == Phase.Failed.value and s.status.reason == err.reason:
            return s.decision()
        return s.fail(err.reason, f"{err.field}: {err.message}")

    if new_run_needed(o.spec, s.status):
        _start_run(s)
    elif s.status.phase in FINISHED_PHASES:
        return _after_finish(s)

    if o.spec.suspend:
        return _suspend(s)
    if s.status.phase == Phase.Suspended.value:
        _resume(s)

    problem = o.input_error
    if problem is not None and not (problem.may_clear and not s.status.job_id):
        return s.fail(problem.reason, f"{problem.field}: {problem.message}")
    deadline = _deadline_exceeded(s)
    if deadline is not None:
        return deadline
    if problem is not None:
        return _wait_for(s, problem)

    if not _cluster_step(s):
        return s.decision()
    return _job_step(s)


def _start_run(s: _Step) -> None:
    """A new run: first sight, or a finished backfill re-applied with a new udf version."""
    spec, st = s.spec, s.status
    if s.job_may_run():  # a new udf version while the old one runs: the old job must stop
        s.act(StopJob(st.job_id))
    previous = st.udf_version
    st.udf_version = spec.udf.version
    st.start_time = _later_than(s.o.now, st.start_time)
    st.attempts, st.job_id = 0, None
    st.completion_time = st.progress = st.rows = st.log_tail = st.table_version = None
    for type_ in (COMPLETE, FAILED, SUSPENDED):
        s.cond(type_, "False", "RunStarted")
    s.cond(JOB_SUBMITTED, "False", "RunStarted")
    s.cond(PROGRESSING, "True", "RunStarted", f"udf version {spec.udf.version}")
    if condition(st, CLUSTER_READY) is None:
        s.cond(CLUSTER_READY, "False", "RunStarted")
    why = f"udf version {spec.udf.version}" + (f" (was {previous})" if previous else "")
    st.phase = None  # force the Pending event even when re-running from a finished phase
    s.phase(Phase.Pending, "RunStarted", why)


def _later_than(now: datetime, previous: Optional[str]) -> str:
    """A run start strictly after the previous one: run starts key submission ids."""
    prev = parse_time(previous)
    if prev is not None and now <= prev:
        now = prev + timedelta(seconds=1)
    return format_time(now)


def _run_recorded(s: _Step) -> bool:
    """The current run's start is persisted, so submission ids derived from it are stable."""
    old = s.old
    return (
        old.start_time == s.status.start_time
        and old.udf_version == s.status.udf_version
        and old.phase in ACTIVE_PHASES
    )


def _after_finish(s: _Step) -> Decision:
    due = cleanup_due_at(s.spec, s.status)
    if due is not None and s.o.now >= due:
        name = s.status.ray_cluster_name
        s.act(DeleteCluster(name))
        s.cond(CLUSTER_READY, "False", CLUSTER_DELETED,
               f"RayCluster {name} deleted {s.spec.cleanup.ttl_seconds_after_finished}s after the run "
               f"(cleanup policy {s.spec.cleanup.policy})")
        s.event("Normal", "ClusterDeleted", f"deleted RayCluster {name} (cleanup policy {s.spec.cleanup.policy})")
    return s.decision()


def _suspend(s: _Step) -> Decision:
    st, cluster = s.status, s.o.cluster
    if st.phase in FINISHED_PHASES:
        return s.decision()  # nothing runs; suspending a finished backfill changes nothing
    stopping = s.job_may_run()
    if stopping:
        s.act(StopJob(st.job_id))
    if s.owned:
        # Deleting our cluster ends the job for sure; suspended is settled once it is gone.
        present = cluster is None or (cluster.exists and cluster.owned)
        if cluster is not None and cluster.exists and cluster.owned:
            s.act(DeleteCluster(s.o.cluster_name))
        settled = not present
        s.cond(CLUSTER_READY, "False", CLUSTER_DELETED, "deleted while suspended")
    else:
        settled = not stopping  # an existing cluster stays: wait until Ray reports the job stopped
    s.cond(JOB_SUBMITTED, "False", "Suspended", "stopped; a resume submits a new job that continues from checkpoints")
    s.cond(PROGRESSING, "False", "Suspended")
    s.cond(SUSPENDED, "True", SUSPENDED_IDLE if settled else SUSPENDING, "spec.suspend is true")
    s.phase(Phase.Suspended, "Suspended", "spec.suspend is true")
    return s.decision()


def _resume(s: _Step) -> None:
    st = s.status
    # A new run start (so new submission ids) but the same attempt number: a suspension is
    # not a failure and does not use up the retry budget.
    st.start_time = _later_than(s.o.now, st.start_time)
    st.job_id = None
    st.completion_time = None
    s.cond(SUSPENDED, "False", "Resumed")
    s.cond(PROGRESSING, "True", "Resumed", "continuing from checkpoints")
    s.phase(Phase.Pending, "Resumed", "spec.suspend is false: continuing from checkpoints")


def _wait_for(s: _Step, problem: InputError) -> Decision:
    """A problem that may clear by itself, before anything was submitted: wait (the startup
    deadline ends the wait; its message then names what was waited for)."""
    message = f"{problem.field}: {problem.message}; waiting for it (spec.startupDeadlineSeconds)"
    s.cond(CLUSTER_READY, "False", problem.reason, message)
    if s.old.reason != problem.reason:
        s.event("Warning", problem.reason, message)
    s.status.phase, s.status.reason, s.status.message = Phase.Pending.value, problem.reason, message
    return s.decision()


def _deadline_exceeded(s: _Step) -> Optional[Decision]:
    spec, st = s.spec, s.status
    start = parse_time(st.start_time)
    if start is None:
        return None
    elapsed = (s.o.now - start).total_seconds()
    if spec.active_deadline_seconds is not None and elapsed > spec.active_deadline_seconds:
        return s.fail("DeadlineExceeded", f"spec.activeDeadlineSeconds: run exceeded {spec.active_deadline_seconds}s")
    if st.phase in (Phase.Pending.value, Phase.Provisioning.value) and elapsed > spec.startup_deadline_seconds:
        waiting = condition(st, CLUSTER_READY)
        if waiting is not None and waiting.reason in POD_PROBLEM_REASONS:
            # The pods' own reason is the failure's: it says what to fix.
            return s.fail(waiting.reason, f"spec.startupDeadlineSeconds: not running after "
                          f"{spec.startup_deadline_seconds}s: {waiting.message}")
        detail = f" (ClusterReady: {waiting.reason} {waiting.message})".rstrip() if waiting else ""
        return s.fail(
            "StartupDeadlineExceeded",
            f"spec.startupDeadlineSeconds: not running after {spec.startup_deadline_seconds}s{detail}",
        )
    return None


def _cluster_step(s: _Step) -> bool:
    """Converge the cluster; True when it is ready for the job."""
    st, cluster, name = s.status, s.o.cluster, s.o.cluster_name
    if cluster is None:  # not observed (an error upstream): change nothing
        return False
    running = st.phase == Phase.Running.value
    if not cluster.exists and not s.owned:
        problem = InputError("spec.existingCluster.name", "ExistingClusterNotFound",
                             f"RayCluster {name} not found in namespace {s.o.namespace}", may_clear=True)
        if st.job_id:  # it ran our job: gone for good
            s.fail(problem.reason, f"{problem.field}: {problem.message}")
        else:
            _wait_for(s, problem)
        return False
    # Recorded once the cluster exists or is being created (cleanup keys off it).
    st.ray_cluster_name, st.dashboard_url = name, s.o.dashboard_url
    if not cluster.exists:
        if running and st.job_id:
            # Our cluster vanished under a running job: the attempt is lost; the retry
            # (if the budget allows) runs on a new cluster and resumes from checkpoints.
            if not _attempt_failed(s, "ClusterLost", f"RayCluster {name} disappeared while the job ran", None):
                return False
        s.act(CreateCluster(name))
        s.cond(CLUSTER_READY, "False", "Creating", f"creating RayCluster {name}")
        if not running:
            s.phase(Phase.Provisioning, "CreatingCluster", f"creating RayCluster {name}")
        return False
    if s.owned and not cluster.owned:
        s.fail("ClusterNameConflict", f"metadata.name: RayCluster {name} exists and does not belong to this backfill")
        return False
    _outdated(s, cluster)
    if s.owned and cluster.recreate and not st.job_id:
        # No job on it (before the first or between attempts): recreate from the new spec
        # on a later reconcile. Never under a running job: that would kill it.
        s.act(DeleteCluster(name))
        s.cond(CLUSTER_READY, "False", "Recreating", "changed: " + ", ".join(cluster.recreate))
        return False
    if s.owned and cluster.patch:
        s.act(PatchCluster(name, cluster.patch))
    # A shared existingCluster whose head is ready may have groups our job does not need.
    stuck = cluster.pod_problem if not st.job_id and (s.owned or not cluster.ready) else None
    if stuck is not None and stuck.permanent:
        s.fail(stuck.reason, f"RayCluster {name}: {stuck.message}")
        return False
    if not cluster.ready or stuck is not None:
        reason, why = (stuck.reason, stuck.message) if stuck else ("NotReady", cluster.message)
        s.cond(CLUSTER_READY, "False", reason, why or f"waiting for RayCluster {name}")
        if st.phase != Phase.Running.value:
            s.phase(Phase.Provisioning, "WaitingForCluster", f"waiting for RayCluster {name}" + (f": {why}" if stuck else ""))
        return False
    pending_change = f"; changes to {', '.join(cluster.recreate)} apply to the next run" if s.owned and cluster.recreate else ""
    image = f" (image {cluster.image})" if cluster.image else ""
    s.cond(CLUSTER_READY, "True", "Ready", f"RayCluster {name} is ready{image}{pending_change}")
    return True


def _outdated(s: _Step, cluster: ClusterView) -> None:
    """ClusterOutdated: spec changes our running cluster cannot take in place wait for a moment
    with no job on it (see cluster/update.py). Absent until the first such change."""
    if s.owned and cluster.recreate:
        fields = ", ".join(cluster.recreate)
        message = f"changed: {fields}; the cluster is recreated when no job runs on it (suspend and resume to apply now)"
        current = condition(s.status, CLUSTER_OUTDATED)
        if current is None or current.status != "True" or current.message != message:
            s.event("Warning" if s.status.job_id else "Normal", "ClusterOutdated", message)
        s.cond(CLUSTER_OUTDATED, "True", "SpecChanged", message)
    elif condition(s.status, CLUSTER_OUTDATED) is not None:
        s.cond(CLUSTER_OUTDATED, "False", "UpToDate", "the RayCluster matches the spec")


def _job_step(s: _Step) -> Decision:
    st, job = s.status, s.o.job
    if st.job_id:
        if job is None or job.submission_id != st.job_id or job.state == JobUnknown.UNREACHABLE:
            detail = job.message if job is not None else "not observed"
            s.cond(PROGRESSING, "True", "JobUnknown", f"job {st.job_id}: {detail}")
            return s.decision()
        if job.state == RayJobState.PENDING:
            s.cond(PROGRESSING, "True", "JobPending", job.message)
            if st.phase != Phase.Running.value:
                s.phase(Phase.Provisioning, "JobPending", f"job {st.job_id} is starting")
            return s.decision()
        if job.progress is not None:
            st.progress = progress_from(job.progress, st.progress, s.o.now)
            st.rows = rows_column(st.progress)
            if job.progress.table_version is not None:
                st.table_version = job.progress.table_version
        if job.state == RayJobState.RUNNING:
            s.cond(PROGRESSING, "True", "JobRunning", f"attempt {st.attempts}, job {st.job_id}")
            s.phase(Phase.Running, "JobRunning", f"job {st.job_id} (attempt {st.attempts}) is running")
            return s.decision()
        if job.state == RayJobState.SUCCEEDED:
            return s.succeed(job)
        missing = None
        if job.state == RayJobState.FAILED:
            missing = missing_engine_module(job.log_tail) or missing_engine_module(job.message)
        if missing:  # every retry would fail alike
            return s.fail(ENGINE_NOT_IN_IMAGE, _engine_not_in_image(s, missing), job.log_tail)
        reason = {RayJobState.FAILED: "JobFailed", RayJobState.STOPPED: "JobStopped"}.get(job.state, "JobLost")
        message = failure_summary(job.message, job.log_tail) or (
            f"job {st.job_id} not found on RayCluster {s.o.cluster_name}" if reason == "JobLost" else "")
        if not _attempt_failed(s, reason, message, job.log_tail):
            return s.decision()
        if s.owned and s.o.cluster is not None and s.o.cluster.recreate:
            return s.decision()  # the next attempt runs on a cluster rebuilt from the current spec

    if not _run_recorded(s):
        # Submission ids derive from the run start: persist it before the first submission.
        s.cond(JOB_SUBMITTED, "False", "Preparing", "recording the run before submitting")
        if st.phase != Phase.Running.value:
            s.phase(Phase.Provisioning, "Preparing", "recording the run before submitting")
        return s.decision()
    attempt = max(st.attempts, 1)
    sid = submission_id(s.o.uid, st.start_time, attempt)
    s.act(SubmitJob(sid, attempt))
    st.job_id, st.attempts = sid, attempt
    s.cond(JOB_SUBMITTED, "True", "Submitted", f"job {sid} (attempt {attempt} of {s.spec.backoff_limit + 1})")
    s.cond(PROGRESSING, "True", "JobPending", f"job {sid} submitted")
    s.event("Normal", "JobSubmitted", f"submitted job {sid} (attempt {attempt}) to RayCluster {s.o.cluster_name}")
    if st.phase != Phase.Running.value:
        s.phase(Phase.Provisioning, "JobSubmitted", f"job {sid} is starting")
    return s.decision()


def _engine_not_in_image(s: _Step, missing: str) -> str:
    cluster = s.o.cluster
    image = (cluster.image if cluster is not None else None) or "?"
    fix = "install geneva-operator[engine] into it (see the Dockerfile's ray-worker target)"
    if not s.owned:
        return (f"spec.existingCluster.name: RayCluster {s.o.cluster_name} runs image {image}, which lacks the backfill "
                f"engine ({missing}): {fix}")
    if s.spec.cluster.image is None:
        return (f"spec.cluster.image: the operator's default Ray image {image} lacks the backfill engine ({missing}): "
                f"point the operator's rayImage (GENEVA_DEFAULT_RAY_IMAGE) at the geneva ray-worker image, or {fix}")
    default = f" ({s.o.default_image})" if s.o.default_image else ""
    return (f"spec.cluster.image: image {image} lacks the backfill engine ({missing}): unset spec.cluster.image to use "
            f"the geneva ray-worker image{default}, or {fix}")


def _attempt_failed(s: _Step, reason: str, message: str, log_tail: Optional[str]) -> bool:
    """Record a failed attempt. True: a retry is due (status prepared for the next
    submission); False: the retry budget is spent and the backfill failed."""
    st, spec = s.status, s.spec
    failed_id = st.job_id
    if log_tail:
        st.log_tail = bound_log_tail(log_tail)
    detail = f"attempt {st.attempts} ({failed_id}): {reason}" + (f": {message}" if message else "")
    if st.attempts > spec.backoff_limit:
        s.fail("BackoffLimitExceeded", f"{detail}; backoffLimit {spec.backoff_limit} reached")
        return False
    st.attempts += 1
    st.job_id = None  # the next submission id is derived from the new attempt number
    st.reason, st.message = reason, detail
    s.cond(JOB_SUBMITTED, "False", "Retrying", detail)
    s.event("Warning", reason, f"{detail}; retrying as attempt {st.attempts} (resumes from checkpoints)")
    return True


def _finalize(s: _Step) -> Decision:
    """The resource is being deleted: stop the job, delete our cluster, then let it go."""
    cluster = s.o.cluster
    if s.status.job_id and s.status.phase not in FINISHED_PHASES:
        s.act(StopJob(s.status.job_id))
    ours = s.owned and cluster is not None and cluster.exists and cluster.owned
    if ours:
        s.act(DeleteCluster(s.o.cluster_name))
    finalized = cluster is not None and not ours
    return Decision(status=s.status, actions=tuple(s.actions), finalized=finalized)
