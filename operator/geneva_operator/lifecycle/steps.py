"""The steps of the table in lifecycle/__init__.py: what each state does with what was observed."""
from __future__ import annotations

from typing import Optional

from ..api.job_contract import RayJobState, missing_engine_module
from ..api.models import State
from ..cluster.pods import PodProblem
from .actions import CreateCluster, Decision, DeleteCluster, PatchCluster, StopJob, SubmitJob
from .facts import ClusterView, ExistingClusterMissing, JobUnknown, Problem
from .step import (
    CLUSTER_DELETED, CLUSTER_OUTDATED, CLUSTER_READY, COMPLETE, ENGINE_NOT_IN_IMAGE, FAILED, JOB_SUBMITTED, PROGRESSING,
    RAN, STARTING, SUSPENDED, SUSPENDED_IDLE, SUSPENDING, Step, cleanup_time, condition,
)
from .text import (
    bound_log_tail, failure_summary, format_time, later_than, parse_time, progress_from, rows_column, submission_id,
)


# ---------------------------------------------------------------- the steps of the table


def start_attempt(s: Step) -> Decision:
    """New, WaitingForInputs, CreatingCluster, WaitingForCluster, Preparing: get the cluster
    ready, then submit the first job of this run (segment)."""
    if converge_cluster(s):
        submit(s)
    return s.decision()


def follow_attempt(s: Step) -> Decision:
    """Submitting, Running: follow the job of this attempt on a cluster kept as the spec says."""
    if converge_cluster(s):
        return follow_job(s) if s.status.job_id else submit(s)
    return s.decision()


def retry(s: Step) -> Decision:
    """Retrying: the next attempt, on the cluster (recreated first if outdated), until it runs."""
    if converge_cluster(s):
        return follow_job(s) if s.status.job_id else submit(s)
    return s.decision()


def finished(s: Step) -> Decision:
    """Succeeded, Failed: nothing runs; our cluster goes when spec.cleanup says."""
    st, cluster = s.status, s.o.cluster
    due = cleanup_time(s.spec, s.state, st)
    st.cleanup_after = format_time(due) if due is not None else None
    if due is None:
        return s.decision()
    if s.o.now < due:
        s.requeue_after = (due - s.o.now).total_seconds()
        return s.decision()
    if cluster is None:
        return s.decision()  # not observed (machine.needs asks once due): look again
    name, cleanup = st.ray_cluster_name, s.spec.cleanup
    if cluster.exists and cluster.owned:
        # Written before the delete is sent (see the package docstring): done once seen gone.
        if not cluster.deleting:
            s.act(DeleteCluster(name))
        s.cond(CLUSTER_READY, "False", "Deleting", f"deleting RayCluster {name} (cleanup policy {cleanup.policy})")
        return s.decision()
    st.cleanup_after = None
    if s.old.cleanup_after is not None:  # this cleanup deleted it (else it was gone already)
        s.cond(CLUSTER_READY, "False", CLUSTER_DELETED, f"RayCluster {name} deleted "
               f"{cleanup.ttl_seconds_after_finished}s after the run (cleanup policy {cleanup.policy})")
        s.event("Normal", "ClusterDeleted", f"deleted RayCluster {name} (cleanup policy {cleanup.policy})")
    return s.decision()


# ---------------------------------------------------------------- guards (run before the table)


def start_run(s: Step) -> None:
    """A new run: first sight, or a finished backfill re-applied with a new udf version."""
    spec, st = s.spec, s.status
    if s.job_may_run():  # a new udf version while the old one runs: the old job must stop
        s.act(StopJob(st.job_id))
    previous = st.udf_version
    st.udf_version = spec.udf.version
    st.start_time = later_than(s.o.now, st.start_time)
    st.attempts, st.job_id = 0, None
    st.completion_time = st.progress = st.rows = st.log_tail = st.table_version = None
    st.cleanup_after = st.last_action_error = None
    for type_ in (COMPLETE, FAILED, SUSPENDED):
        s.cond(type_, "False", "RunStarted")
    s.cond(JOB_SUBMITTED, "False", "RunStarted")
    s.cond(PROGRESSING, "True", "RunStarted", f"udf version {spec.udf.version}")
    if condition(st, CLUSTER_READY) is None:
        s.cond(CLUSTER_READY, "False", "RunStarted")
    why = f"udf version {spec.udf.version}" + (f" (was {previous})" if previous else "")
    s.shown = None  # the Pending event even when re-running from a finished phase
    s.to(State.New, "RunStarted", why)


def suspend(s: Step) -> Decision:
    st, cluster = s.status, s.o.cluster
    if s.state in (State.Succeeded, State.Failed):
        return s.decision()  # nothing runs; suspending a finished backfill changes nothing
    if s.state == State.Suspended and cluster is None:
        return s.decision()  # settled, and not observed (machine.needs): nothing of ours runs
    stopping = s.job_may_run()
    if stopping:
        s.act(StopJob(st.job_id))
    if s.owned:
        # Deleting our cluster ends the job for sure; suspended is settled once it is gone.
        present = cluster is None or (cluster.exists and cluster.owned)
        if cluster is not None and cluster.exists and cluster.owned and not cluster.deleting:
            s.act(DeleteCluster(s.o.cluster_name))
        settled = not present
        s.cond(CLUSTER_READY, "False", CLUSTER_DELETED, "deleted while suspended")
    else:
        settled = not stopping  # an existing cluster stays: wait until Ray reports the job stopped
    s.cond(JOB_SUBMITTED, "False", "Suspended", "stopped; a resume submits a new job that continues from checkpoints")
    s.cond(PROGRESSING, "False", "Suspended")
    s.cond(SUSPENDED, "True", SUSPENDED_IDLE if settled else SUSPENDING, "spec.suspend is true")
    s.to(State.Suspended if settled else State.Suspending, "Suspended", "spec.suspend is true")
    return s.decision()


def resume(s: Step) -> None:
    st = s.status
    # A new run start (so new submission ids) but the same attempt number: a suspension is
    # not a failure and does not use up the retry budget.
    st.start_time = later_than(s.o.now, st.start_time)
    st.job_id = None
    st.completion_time = None
    s.cond(SUSPENDED, "False", "Resumed")
    s.cond(PROGRESSING, "True", "Resumed", "continuing from checkpoints")
    s.to(State.New, "Resumed", "spec.suspend is false: continuing from checkpoints")


def wait_for(s: Step, problem: Problem) -> Decision:
    """A problem that may clear by itself, before anything was submitted: wait (the startup
    deadline ends the wait; its message then names what was waited for)."""
    message = f"{problem.field}: {problem.message}; waiting for it (spec.startupDeadlineSeconds)"
    s.cond(CLUSTER_READY, "False", problem.reason, message)
    if s.old.reason != problem.reason:  # said once, not at every poll
        s.event("Warning", problem.reason, message)
    s.to(State.WaitingForInputs, problem.reason, message, event=False)
    return s.decision()


def deadline_exceeded(s: Step, problem: Optional[Problem]) -> Optional[Decision]:
    spec, st = s.spec, s.status
    start = parse_time(st.start_time)
    if start is None:
        return None
    elapsed = (s.o.now - start).total_seconds()
    if spec.active_deadline_seconds is not None and elapsed > spec.active_deadline_seconds:
        return s.fail("DeadlineExceeded", f"spec.activeDeadlineSeconds: run exceeded {spec.active_deadline_seconds}s")
    if s.state not in STARTING or elapsed <= spec.startup_deadline_seconds:
        return None
    limit = f"spec.startupDeadlineSeconds: not running after {spec.startup_deadline_seconds}s"
    pods = stuck(s)
    if pods is not None and problem is None:
        return s.fail(pods.reason, f"{limit}: {pods.message}")  # the pods' own reason says what to fix
    waiting = condition(s.status, CLUSTER_READY)  # for the message only: what was waited for
    detail = f" (ClusterReady: {waiting.reason} {waiting.message})".rstrip() if waiting else ""
    return s.fail("StartupDeadlineExceeded", f"{limit}{detail}")


def finalize(s: Step) -> Decision:
    """The resource is being deleted: stop the job, delete our cluster, then let it go."""
    cluster = s.o.cluster
    if s.status.job_id and s.state not in (State.Succeeded, State.Failed):
        s.act(StopJob(s.status.job_id))
    ours = s.owned and cluster is not None and cluster.exists and cluster.owned
    if ours:
        s.act(DeleteCluster(s.o.cluster_name))
    return Decision(status=s.status, actions=tuple(s.actions), finalized=cluster is not None and not ours)


# ---------------------------------------------------------------- the cluster


def stuck(s: Step) -> Optional[PodProblem]:
    """Why the cluster's pods cannot start, when that holds the job back: before a job is
    submitted. A shared existingCluster whose head is ready may have groups our job does not need."""
    cluster = s.o.cluster
    if cluster is None or not cluster.exists or s.status.job_id or not (s.owned or not cluster.ready):
        return None
    return cluster.pod_problem


def converge_cluster(s: Step) -> bool:
    """Converge the cluster; True when it is ready for the job."""
    st, cluster, name = s.status, s.o.cluster, s.o.cluster_name
    if cluster is None:  # not observed (an error upstream): change nothing
        return False
    if not cluster.exists and not s.owned:
        problem = ExistingClusterMissing(name, s.o.namespace)
        if st.job_id:  # it ran our job: gone for good
            s.fail(problem.reason, f"{problem.field}: {problem.message}")
        else:
            wait_for(s, problem)
        return False
    # Recorded once the cluster exists or is being created (cleanup keys off it).
    st.ray_cluster_name, st.dashboard_url = name, s.o.dashboard_url
    if not cluster.exists:
        if st.job_id:
            # Our cluster vanished under the job: the attempt is lost; the retry (if the
            # budget allows) runs on a new cluster and resumes from checkpoints.
            if not attempt_failed(s, "ClusterLost", f"RayCluster {name} disappeared while the job ran", None):
                return False
        s.act(CreateCluster(name))
        s.cond(CLUSTER_READY, "False", "Creating", f"creating RayCluster {name}")
        s.starting(State.CreatingCluster, "CreatingCluster", f"creating RayCluster {name}")
        return False
    if s.owned and not cluster.owned:
        s.fail("ClusterNameConflict", f"metadata.name: RayCluster {name} exists and does not belong to this backfill")
        return False
    outdated(s, cluster)
    if s.owned and cluster.recreate and not st.job_id:
        # No job on it (before the first or between attempts): recreate from the new spec
        # on a later reconcile. Never under a running job: that would kill it.
        s.act(DeleteCluster(name))
        s.cond(CLUSTER_READY, "False", "Recreating", "changed: " + ", ".join(cluster.recreate))
        return False
    if s.owned and cluster.patch:
        s.act(PatchCluster(name, cluster.patch))
    pods = stuck(s)
    if pods is not None and pods.permanent:
        s.fail(pods.reason, f"RayCluster {name}: {pods.message}")
        return False
    if not cluster.ready or pods is not None:
        reason, why = (pods.reason, pods.message) if pods else ("NotReady", cluster.message)
        s.cond(CLUSTER_READY, "False", reason, why or f"waiting for RayCluster {name}")
        s.starting(State.WaitingForCluster, "WaitingForCluster", f"waiting for RayCluster {name}" + (f": {why}" if pods else ""))
        return False
    pending_change = f"; changes to {', '.join(cluster.recreate)} apply to the next run" if s.owned and cluster.recreate else ""
    image = f" (image {cluster.image})" if cluster.image else ""
    s.cond(CLUSTER_READY, "True", "Ready", f"RayCluster {name} is ready{image}{pending_change}")
    return True


def outdated(s: Step, cluster: ClusterView) -> None:
    """ClusterOutdated: spec changes our running cluster cannot take in place wait for a moment
    with no job on it (see cluster/update.py). Absent until the first such change."""
    if s.owned and cluster.recreate:
        fields = ", ".join(cluster.recreate)
        message = f"changed: {fields}; the cluster is recreated when no job runs on it (suspend and resume to apply now)"
        current = condition(s.status, CLUSTER_OUTDATED)
        if current is None or current.status != "True" or current.message != message:  # said once
            s.event("Warning" if s.status.job_id else "Normal", "ClusterOutdated", message)
        s.cond(CLUSTER_OUTDATED, "True", "SpecChanged", message)
    elif condition(s.status, CLUSTER_OUTDATED) is not None:
        s.cond(CLUSTER_OUTDATED, "False", "UpToDate", "the RayCluster matches the spec")


# ---------------------------------------------------------------- the job


def run_recorded(s: Step) -> bool:
    """The current run's start is persisted, so submission ids derived from it are stable."""
    return s.old.start_time == s.status.start_time and s.old.udf_version == s.status.udf_version


def submit(s: Step) -> Decision:
    st = s.status
    if not run_recorded(s):
        # Submission ids derive from the run start: persist it before the first submission.
        s.cond(JOB_SUBMITTED, "False", "Preparing", "recording the run before submitting")
        s.starting(State.Preparing, "Preparing", "recording the run before submitting")
        return s.decision()
    attempt = max(st.attempts, 1)
    sid = submission_id(s.o.uid, st.start_time, attempt)
    s.act(SubmitJob(sid, attempt))
    st.job_id, st.attempts = sid, attempt
    s.cond(JOB_SUBMITTED, "True", "Submitted", f"job {sid} (attempt {attempt} of {s.spec.backoff_limit + 1})")
    s.cond(PROGRESSING, "True", "JobPending", f"job {sid} submitted")
    s.event("Normal", "JobSubmitted", f"submitted job {sid} (attempt {attempt}) to RayCluster {s.o.cluster_name}")
    s.starting(State.Submitting, "JobSubmitted", f"job {sid} is starting")
    return s.decision()


def follow_job(s: Step) -> Decision:
    st, job = s.status, s.o.job
    if job is None or job.submission_id != st.job_id or job.state == JobUnknown.UNREACHABLE:
        detail = job.message if job is not None else "not observed"
        s.cond(PROGRESSING, "True", "JobUnknown", f"job {st.job_id}: {detail}")
        return s.decision()
    if job.state == JobUnknown.NOT_FOUND and s.state != State.Running:
        # Never seen running: the submission did not happen (the status is written before it is
        # sent) or Ray lost it. The same id again: Ray adopts it should it exist after all.
        s.act(SubmitJob(st.job_id, st.attempts))
        s.cond(PROGRESSING, "True", "JobPending", f"job {st.job_id} submitted again: Ray did not know it")
        return s.decision()
    if job.state == RayJobState.PENDING:
        s.cond(PROGRESSING, "True", "JobPending", job.message)
        s.starting(State.Submitting, "JobPending", f"job {st.job_id} is starting")
        return s.decision()
    if job.progress is not None:
        st.progress = progress_from(job.progress, st.progress, s.o.now)
        st.rows = rows_column(st.progress)
        if job.progress.table_version is not None:
            st.table_version = job.progress.table_version
    if job.state == RayJobState.RUNNING:
        s.cond(PROGRESSING, "True", "JobRunning", f"attempt {st.attempts}, job {st.job_id}")
        s.to(State.Running, "JobRunning", f"job {st.job_id} (attempt {st.attempts}) is running")
        return s.decision()
    if job.state == RayJobState.SUCCEEDED:
        return s.succeed(job)
    missing = None
    if job.state == RayJobState.FAILED:
        missing = missing_engine_module(job.log_tail) or missing_engine_module(job.message)
    if missing:  # every retry would fail alike
        return s.fail(ENGINE_NOT_IN_IMAGE, engine_not_in_image(s, missing), job.log_tail)
    reason = {RayJobState.FAILED: "JobFailed", RayJobState.STOPPED: "JobStopped"}.get(job.state, "JobLost")
    message = failure_summary(job.message, job.log_tail) or (
        f"job {st.job_id} not found on RayCluster {s.o.cluster_name}" if reason == "JobLost" else "")
    if not attempt_failed(s, reason, message, job.log_tail):
        return s.decision()
    if s.owned and s.o.cluster is not None and s.o.cluster.recreate:
        return s.decision()  # the next attempt runs on a cluster rebuilt from the current spec
    return submit(s)


def engine_not_in_image(s: Step, missing: str) -> str:
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


def attempt_failed(s: Step, reason: str, message: str, log_tail: Optional[str]) -> bool:
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
    # A job that ran leaves the phase Running through the retry; one that never started
    # leaves the run where it was: getting a cluster ready for its first job.
    s.to(State.Retrying if s.state in RAN else State.WaitingForCluster, reason, detail, event=False)
    s.cond(JOB_SUBMITTED, "False", "Retrying", detail)
    s.event("Warning", reason, f"{detail}; retrying as attempt {st.attempts} (resumes from checkpoints)")
    return True
