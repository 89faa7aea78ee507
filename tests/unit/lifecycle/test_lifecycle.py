"""The state machine, transition by transition. `World` replays what the handlers do: observe,
decide, (pretend to) act, persist the status; the tests assert on phases, conditions, actions."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

import pytest

from geneva_operator import lifecycle as lc
from geneva_operator.api.job_contract import ProgressReport, RayJobState, ResultReport
from geneva_operator.api.models import BackfillSpec, BackfillStatus
from geneva_operator.cluster.pods import PodProblem
from geneva_operator.lifecycle import (
    ClusterView,
    CreateCluster,
    DeleteCluster,
    JobUnknown,
    JobView,
    Observed,
    PatchCluster,
    RecordEvent,
    SecretMissing,
    SpecInvalid,
    StopJob,
    SubmitJob,
)

UID = "4f1c2d3e-aaaa-bbbb-cccc-0123456789ab"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
READY = ClusterView(exists=True, ready=True, owned=True)
ABSENT = ClusterView(exists=False)


def make_spec(**over: Any) -> BackfillSpec:
    wire: dict[str, Any] = {
        "table": {"uri": "s3://b/db", "name": "t"},
        "column": "out",
        "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32", "version": "1"},
        "cluster": {},
        "backoffLimit": 2,
        "startupDeadlineSeconds": 600,
    }
    for key, value in over.items():
        if value is None:
            wire.pop(key, None)
        else:
            wire[key] = value
    return BackfillSpec.model_validate(wire)


class World:
    def __init__(self, spec: Optional[BackfillSpec] = None, status: Optional[BackfillStatus] = None):
        self.spec = spec or make_spec()
        self.status = status or BackfillStatus()
        self.now = T0
        self.generation = 1
        self.last: Optional[lc.Decision] = None

    def observed(self, **kw: Any) -> Observed:
        name = self.spec.existing_cluster.name if self.spec.existing_cluster else "bf-ray"
        base = dict(
            name="bf", namespace="ns", uid=UID, generation=self.generation, spec=self.spec,
            status=self.status, now=self.now, cluster_name=name, dashboard_url="http://d:8265",
        )
        base.update(kw)
        return Observed(**base)

    def step(self, persist: bool = True, **kw: Any) -> lc.Decision:
        self.last = lc.decide(self.observed(**kw))
        if persist:
            self.status = self.last.status
        return self.last

    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def job(self, state: RayJobState | JobUnknown, **kw: Any) -> JobView:
        return JobView(self.status.job_id, state, **kw)

    def running(self) -> "World":
        """Drive to Running with attempt 1."""
        self.step(cluster=ABSENT)
        self.tick(5)
        self.step(cluster=READY)
        self.tick(5)
        self.step(cluster=READY, job=self.job(RayJobState.RUNNING))
        assert self.status.phase == "Running"
        return self


def actions(d: lc.Decision, kind: type) -> list:
    return [a for a in d.actions if isinstance(a, kind)]


def cond(status: BackfillStatus, type_: str):
    c = lc.condition(status, type_)
    assert c is not None, type_
    return c


# ---------------------------------------------------------------- the happy path


def test_first_sight_starts_a_run_and_creates_the_cluster():
    w = World()
    d = w.step(cluster=ABSENT)
    assert w.status.phase == "Provisioning"
    assert w.status.udf_version == "1" and w.status.start_time == "2026-03-01T12:00:00Z"
    assert w.status.attempts == 0 and w.status.job_id is None
    assert actions(d, CreateCluster) == [CreateCluster("bf-ray")]
    assert not actions(d, SubmitJob)
    assert {e.reason for e in actions(d, RecordEvent)} >= {"RunStarted", "CreatingCluster"}
    assert {c.type for c in w.status.conditions} == set(lc.CONDITION_TYPES) - {"ClusterOutdated"}
    assert cond(w.status, "ClusterReady").status == "False"
    assert cond(w.status, "Progressing").status == "True"
    assert all(c.observed_generation == 1 and c.last_transition_time for c in w.status.conditions)
    assert w.status.ray_cluster_name == "bf-ray" and w.status.dashboard_url == "http://d:8265"


def test_waits_for_cluster_then_submits_attempt_one_with_deterministic_id():
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    d = w.step(cluster=replace(READY, ready=False, message="head pod not ready"))
    assert w.status.phase == "Provisioning" and not d.actions
    assert cond(w.status, "ClusterReady").message == "head pod not ready"
    w.tick(5)
    d = w.step(cluster=READY)
    sid = "geneva-4f1c2d3e-20260301t120000-1"
    assert actions(d, SubmitJob) == [SubmitJob(sid, 1)]
    assert w.status.job_id == sid and w.status.attempts == 1
    assert cond(w.status, "ClusterReady").status == "True"
    assert cond(w.status, "JobSubmitted").status == "True"


def test_the_same_observation_gives_the_same_decision():
    # A crashed operator re-deciding from the same persisted status submits the same id
    # (the handlers GET it first and adopt the job).
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    first = w.step(cluster=READY, persist=False)
    again = w.step(cluster=READY, persist=False)
    assert first == again
    assert actions(first, SubmitJob)[0].submission_id == actions(again, SubmitJob)[0].submission_id


def test_no_submission_in_the_reconcile_that_starts_the_run():
    # existingCluster ready at first sight: the run start must be persisted before the first
    # submission, since the submission id derives from it.
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    d = w.step(cluster=ClusterView(exists=True, ready=True, owned=False))
    assert not actions(d, SubmitJob) and w.status.phase == "Provisioning"
    w.tick(5)
    d = w.step(cluster=ClusterView(exists=True, ready=True, owned=False))
    assert len(actions(d, SubmitJob)) == 1


def test_pending_running_progress_and_success():
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=READY)
    w.tick(5)
    w.step(cluster=READY, job=w.job(RayJobState.PENDING, message="setting up runtime env"))
    assert w.status.phase == "Provisioning"
    progress = ProgressReport(fragments_done=4, fragments_total=10, rows_done=4_100_000, rows_total=10_000_000,
                              rows_per_second=1000.0, table_version=7)
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=progress))
    assert w.status.phase == "Running"
    assert w.status.rows == "4.1M/10.0M"
    assert w.status.progress.percent == 41 and w.status.progress.eta_seconds == 5900
    assert w.status.table_version == 7
    assert any(e.reason == "JobRunning" for e in actions(d, RecordEvent))
    # same progress again: status unchanged (no patch, updatedAt kept)
    before = w.status.model_copy(deep=True)
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=progress))
    assert w.status == before and not d.actions
    result = ResultReport.model_validate({**progress.model_dump(), "rows_done": 10_000_000, "fragments_done": 10, "committed_version": 9})
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(RayJobState.SUCCEEDED, progress=result))
    assert w.status.phase == "Succeeded" and w.status.table_version == 9
    assert w.status.completion_time == lc.format_time(w.now)
    assert cond(w.status, "Complete").status == "True"
    assert cond(w.status, "Progressing").status == "False"
    assert w.status.rows == "10.0M/10.0M" and w.status.progress.percent == 100


def test_rows_per_second_derived_when_the_job_does_not_report_it():
    w = World().running()
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=ProgressReport(rows_done=1000, rows_total=5000)))
    w.tick(10)
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=ProgressReport(rows_done=2000, rows_total=5000)))
    assert w.status.progress.rows_per_second == 100.0 and w.status.progress.eta_seconds == 30


def test_progress_says_how_much_of_the_done_work_is_committed_and_under_which_udf_version():
    # What a failed run leaves: the committed fragments hold status.udfVersion, the rest is as before.
    w = World().running()
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=ProgressReport(
        fragments_done=3, fragments_total=4, rows_done=3000, rows_total=4000,
        fragments_committed=2, rows_committed=2000, udf_version="1")))
    p = w.status.progress
    assert (p.fragments_done, p.fragments_committed, p.rows_committed) == (3, 2, 2000)
    # a commit that changes nothing else is still news
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING, progress=ProgressReport(
        fragments_done=3, fragments_total=4, rows_done=3000, rows_total=4000,
        fragments_committed=3, rows_committed=3000, udf_version="1")))
    assert w.status.progress.fragments_committed == 3


# ---------------------------------------------------------------- failures and retries


SPEC_B64 = "eyJhdXRoIjp7fSwiYmFja29mZkxpbWl0IjoyLCJjbGVhbnVwIjp7InBvbGljeSI6IkFsd2F5cyJ9LCJjbHVzdGVyIjp7fX0" * 4
UDF_IMPORT_LOG = (
    "INFO job_manager.py:581 -- Runtime env is setting up.\n"
    f"Running entrypoint for job geneva-1-2-3: python -m geneva_operator.engine.job {SPEC_B64}\n"
    'GENEVA_PROGRESS {"fragmentsDone":0,"fragmentsTotal":4,"rowsDone":0,"rowsTotal":12000}\n'
    "error: spec.udf.function: cannot import module 'examples.udfs.text': No module named 'examples'\n")


def test_a_failed_job_says_what_failed_in_one_line_without_the_spec_blob():
    w = World(make_spec(backoffLimit=0)).running()
    ray_message = ("Job entrypoint command failed with exit code 2, last available logs (truncated to 20,000 chars):\n"
                   + UDF_IMPORT_LOG)
    w.step(cluster=READY, job=w.job(RayJobState.FAILED, message=ray_message, log_tail=UDF_IMPORT_LOG))
    assert w.status.phase == "Failed"
    assert w.status.message == (f"attempt 1 ({w.status.job_id}): JobFailed: Job entrypoint command failed with exit "
                                "code 2: error: spec.udf.function: cannot import module 'examples.udfs.text': No module "
                                "named 'examples'; backoffLimit 0 reached")
    assert SPEC_B64 not in w.status.message and SPEC_B64 not in w.status.log_tail
    assert "python -m geneva_operator.engine.job <spec>" in w.status.log_tail


def test_failed_attempt_retries_with_a_new_id_until_backoff_limit():
    w = World(make_spec(backoffLimit=1)).running()
    first = w.status.job_id
    log = "\n".join(f"line {i}" for i in range(100)) + "\nValueError: boom\n"
    d = w.step(cluster=READY, job=w.job(RayJobState.FAILED, message="exit 1", log_tail=log))
    [submit] = actions(d, SubmitJob)
    assert submit.attempt == 2 and submit.submission_id.endswith("-2") and submit.submission_id != first
    assert w.status.attempts == 2 and w.status.job_id == submit.submission_id
    assert w.status.phase == "Running"
    assert w.status.log_tail.endswith("ValueError: boom") and len(w.status.log_tail.splitlines()) == lc.LOG_TAIL_LINES
    assert any(e.type == "Warning" and e.reason == "JobFailed" for e in actions(d, RecordEvent))
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(RayJobState.FAILED, message="exit 1 again", log_tail="Traceback\nKeyError\n"))
    assert w.status.phase == "Failed" and w.status.reason == "BackoffLimitExceeded"
    assert not actions(d, SubmitJob) and not actions(d, StopJob)
    assert "exit 1 again" in w.status.message and w.status.log_tail == "Traceback\nKeyError"
    assert cond(w.status, "Failed").status == "True"


def test_retry_decision_is_repeatable_after_a_crash():
    w = World().running()
    failed = w.job(RayJobState.FAILED, message="x")
    a = w.step(cluster=READY, job=failed, persist=False)
    b = w.step(cluster=READY, job=failed, persist=False)
    assert actions(a, SubmitJob) == actions(b, SubmitJob)


def test_job_stopped_by_someone_else_counts_as_a_failed_attempt():
    w = World().running()
    d = w.step(cluster=READY, job=w.job(RayJobState.STOPPED))
    assert w.status.reason == "JobStopped" and actions(d, SubmitJob)[0].attempt == 2


def test_job_missing_from_ray_is_lost_and_retried():
    w = World().running()
    d = w.step(cluster=READY, job=w.job(JobUnknown.NOT_FOUND))
    assert w.status.reason == "JobLost" and actions(d, SubmitJob)[0].attempt == 2


def test_a_job_not_found_before_it_was_seen_running_is_submitted_again_under_its_id():
    # The handlers write the status before submitting: a job id Ray does not know was never
    # sent (the submission failed, or the operator stopped in between).
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    [first] = actions(w.step(cluster=READY), SubmitJob)
    assert w.status.state == "Submitting"
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(JobUnknown.NOT_FOUND))
    assert actions(d, SubmitJob) == [first] and w.status.state == "Submitting" and w.status.attempts == 1
    assert not actions(d, RecordEvent)  # the submission was said once
    # The same for the next attempt of a retry, until Ray reports it running.
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    [retry] = actions(w.step(cluster=READY, job=w.job(RayJobState.FAILED, message="x")), SubmitJob)
    assert w.status.state == "Retrying"
    d = w.step(cluster=READY, job=w.job(JobUnknown.NOT_FOUND))
    assert actions(d, SubmitJob) == [retry] and w.status.state == "Retrying" and w.status.attempts == 2


def test_unreachable_dashboard_changes_nothing_but_the_message():
    w = World().running()
    d = w.step(cluster=READY, job=w.job(JobUnknown.UNREACHABLE, message="connection refused"))
    assert w.status.phase == "Running" and not d.actions
    assert "connection refused" in cond(w.status, "Progressing").message


def test_cluster_lost_under_a_running_job_recreates_it_and_retries():
    w = World().running()
    d = w.step(cluster=ABSENT)
    assert actions(d, CreateCluster) and not actions(d, SubmitJob)
    assert w.status.attempts == 2 and w.status.job_id is None and w.status.phase == "Running"
    w.tick(5)
    d = w.step(cluster=READY)
    assert actions(d, SubmitJob)[0] == SubmitJob(lc.submission_id(UID, w.status.start_time, 2), 2)


def test_cluster_lost_with_no_retries_left_fails():
    w = World(make_spec(backoffLimit=0)).running()
    d = w.step(cluster=ABSENT)
    assert w.status.phase == "Failed" and "ClusterLost" in w.status.message and not actions(d, CreateCluster)


# ---------------------------------------------------------------- deadlines


def test_startup_deadline_fails_a_cluster_that_never_gets_ready():
    w = World(make_spec(startupDeadlineSeconds=60))
    w.step(cluster=ABSENT)
    w.tick(30)
    w.step(cluster=replace(READY, ready=False, message="Unschedulable"))
    assert w.status.phase == "Provisioning"
    w.tick(31)
    d = w.step(cluster=replace(READY, ready=False, message="Unschedulable"))
    assert w.status.phase == "Failed" and w.status.reason == "StartupDeadlineExceeded"
    assert "spec.startupDeadlineSeconds" in w.status.message and "Unschedulable" in w.status.message
    assert any(e.type == "Warning" for e in actions(d, RecordEvent))


def test_startup_deadline_covers_a_job_stuck_pending():
    w = World(make_spec(startupDeadlineSeconds=60))
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=READY)
    w.tick(60)
    d = w.step(cluster=READY, job=w.job(RayJobState.PENDING))
    assert w.status.reason == "StartupDeadlineExceeded"
    assert actions(d, StopJob) == [StopJob(w.status.job_id)]


def test_active_deadline_stops_the_job_and_fails():
    w = World(make_spec(activeDeadlineSeconds=3600)).running()
    w.tick(3600)
    d = w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    assert w.status.phase == "Failed" and w.status.reason == "DeadlineExceeded"
    assert actions(d, StopJob) == [StopJob(w.status.job_id)]
    assert "spec.activeDeadlineSeconds" in w.status.message


# ---------------------------------------------------------------- suspend / resume


def test_suspend_stops_the_job_deletes_our_cluster_and_settles():
    w = World().running()
    attempt_id = w.status.job_id
    w.spec = make_spec(suspend=True)
    w.generation = 2
    d = w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    assert w.status.phase == "Suspended"
    assert actions(d, StopJob) == [StopJob(attempt_id)] and actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]
    assert cond(w.status, "Suspended").reason == lc.SUSPENDING
    assert lc.polls(w.status)
    w.tick(5)
    d = w.step(cluster=ABSENT, job=w.job(JobUnknown.UNREACHABLE))
    assert cond(w.status, "Suspended").reason == lc.SUSPENDED_IDLE
    assert not lc.polls(w.status)
    assert not lc.needs(w.spec, w.status, w.now).anything
    assert all(c.observed_generation == 2 for c in w.status.conditions)


def test_resume_starts_a_new_run_segment_with_the_same_attempt():
    w = World().running()
    old_id, old_start = w.status.job_id, w.status.start_time
    w.spec = make_spec(suspend=True)
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    w.step(cluster=ABSENT)
    w.spec = make_spec(suspend=False)
    d = w.step(cluster=ABSENT)  # same second as the run start: the new start must still differ
    assert w.status.phase == "Provisioning" and w.status.job_id is None
    assert w.status.start_time > old_start and w.status.attempts == 1
    assert actions(d, CreateCluster) and not actions(d, SubmitJob)
    assert cond(w.status, "Suspended").status == "False"
    w.tick(5)
    d = w.step(cluster=READY)
    [submit] = actions(d, SubmitJob)
    assert submit.attempt == 1 and submit.submission_id != old_id


def test_suspend_on_an_existing_cluster_only_stops_the_job():
    spec = make_spec(cluster=None, existingCluster={"name": "shared"})
    w = World(spec)
    shared = ClusterView(exists=True, ready=True, owned=False, patch={"x": 1}, recreate=("image",))
    w.step(cluster=shared)
    w.tick(5)
    d = w.step(cluster=shared)
    assert not actions(d, PatchCluster) and not actions(d, DeleteCluster)
    w.spec = make_spec(cluster=None, existingCluster={"name": "shared"}, suspend=True)
    d = w.step(cluster=shared, job=w.job(RayJobState.RUNNING))
    assert actions(d, StopJob) and not actions(d, DeleteCluster)
    assert cond(w.status, "Suspended").reason == lc.SUSPENDING
    d = w.step(cluster=shared, job=w.job(RayJobState.STOPPED))
    assert not d.actions or not actions(d, StopJob)
    assert cond(w.status, "Suspended").reason == lc.SUSPENDED_IDLE


def test_suspend_before_anything_ran():
    w = World(make_spec(suspend=True))
    d = w.step(cluster=ABSENT)
    assert w.status.phase == "Suspended" and not actions(d, CreateCluster)
    assert cond(w.status, "Suspended").reason == lc.SUSPENDED_IDLE


# ---------------------------------------------------------------- new udf version


def test_new_udf_version_after_success_starts_a_new_run():
    w = World().running()
    first_id = w.status.job_id
    w.step(cluster=READY, job=w.job(RayJobState.SUCCEEDED, progress=ResultReport(rows_done=5, rows_total=5, committed_version=3)))
    assert w.status.phase == "Succeeded"
    assert not lc.needs(w.spec, w.status, w.now).anything
    w.tick(60)
    w.spec = make_spec(udf={"function": "m:f", "inputColumns": ["a"], "outputType": "int32", "version": "2"})
    assert not lc.polls(w.status)  # a spec edit reconciles through the update handler, not a timer
    d = w.step(cluster=READY)
    assert w.status.phase == "Provisioning" and w.status.udf_version == "2"
    assert w.status.attempts == 0 and w.status.progress is None and w.status.completion_time is None
    assert cond(w.status, "Complete").status == "False"
    assert not actions(d, SubmitJob) and not actions(d, StopJob)
    w.tick(5)
    d = w.step(cluster=READY)
    [submit] = actions(d, SubmitJob)
    assert submit.attempt == 1 and submit.submission_id != first_id


def test_new_udf_version_while_running_stops_the_old_job():
    w = World().running()
    old = w.status.job_id
    w.spec = make_spec(udf={"function": "m:f", "inputColumns": ["a"], "outputType": "int32", "version": "2"})
    d = w.step(cluster=READY, job=JobView(old, RayJobState.RUNNING))
    assert actions(d, StopJob) == [StopJob(old)]
    assert w.status.attempts == 0 and w.status.job_id is None and w.status.udf_version == "2"


# ---------------------------------------------------------------- cleanup after the run


def _succeeded(spec: BackfillSpec, state: RayJobState = RayJobState.SUCCEEDED) -> World:
    w = World(spec).running()
    w.step(cluster=READY, job=w.job(state, message="boom"))
    return w


# (policy, how the run ended, whether our cluster goes)
POLICIES = [
    ("Always", RayJobState.SUCCEEDED, True),
    ("Always", RayJobState.FAILED, True),
    ("OnSuccess", RayJobState.SUCCEEDED, True),
    ("OnSuccess", RayJobState.FAILED, False),
    ("Never", RayJobState.SUCCEEDED, False),
]


@pytest.mark.parametrize("policy,state,deleted", POLICIES)
def test_cleanup_policy_and_ttl(policy, state, deleted):
    w = _succeeded(make_spec(backoffLimit=0, cleanup={"policy": policy, "ttlSecondsAfterFinished": 600}), state)
    assert w.status.phase in ("Succeeded", "Failed") and not lc.polls(w.status)
    assert lc.waits_for_cleanup(w.status) == deleted
    assert w.status.cleanup_after == ("2026-03-01T12:10:10Z" if deleted else None)
    w.tick(599)
    assert not lc.needs(w.spec, w.status, w.now).anything  # waiting for the TTL costs no requests
    assert not actions(w.step(), DeleteCluster)
    assert w.last.requeue_after == (1 if deleted else None)  # when to look again
    w.tick(1)
    assert lc.needs(w.spec, w.status, w.now).cluster == deleted  # due: is our cluster still there?
    d = w.step(cluster=READY if deleted else None)
    assert (actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]) == deleted
    if deleted:
        # The status is written before the delete is sent: done only once the cluster is seen gone.
        assert cond(w.status, "ClusterReady").reason == "Deleting" and lc.waits_for_cleanup(w.status)
        w.tick(5)
        assert not w.step(cluster=replace(READY, deleting=True)).actions  # KubeRay removing its pods
        d = w.step(cluster=ABSENT)
        assert cond(w.status, "ClusterReady").reason == lc.CLUSTER_DELETED and not actions(d, DeleteCluster)
        assert [e.reason for e in actions(d, RecordEvent)] == ["ClusterDeleted"]
    assert not lc.polls(w.status) and not lc.waits_for_cleanup(w.status)  # the resource stays; nothing polls it
    w.tick(3600)
    # A later reconcile (an edit) only looks whether our cluster is there, in the watch cache.
    assert lc.needs(w.spec, w.status, w.now).cluster == deleted
    before = w.status.model_copy(deep=True)
    assert not w.step(cluster=ABSENT if deleted else None).actions and w.status == before


@pytest.mark.parametrize("policy,state,deleted", [case for case in POLICIES if case[0] != "Never"])
def test_a_cleanup_policy_set_after_the_run_applies_to_the_kept_cluster(policy, state, deleted):
    # A user who kept the cluster (Never) to look at it, then sets the policy they now want.
    w = _succeeded(make_spec(backoffLimit=0, cleanup={"policy": "Never", "ttlSecondsAfterFinished": 600}), state)
    assert w.status.cleanup_after is None
    w.tick(3600)  # the TTL, counted from the run's end, has passed
    w.spec = make_spec(backoffLimit=0, cleanup={"policy": policy, "ttlSecondsAfterFinished": 600})
    w.generation = 2
    assert lc.needs(w.spec, w.status, w.now).cluster == deleted
    d = w.step(cluster=READY if deleted else None)
    assert (actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]) == deleted
    assert lc.waits_for_cleanup(w.status) == deleted
    if deleted:
        d = w.step(cluster=ABSENT)
        assert cond(w.status, "ClusterReady").reason == lc.CLUSTER_DELETED and not lc.waits_for_cleanup(w.status)
        assert [e.reason for e in actions(d, RecordEvent)] == ["ClusterDeleted"]
    assert w.status.phase == ("Succeeded" if state == RayJobState.SUCCEEDED else "Failed")


def test_a_cleanup_policy_set_after_the_run_waits_for_the_rest_of_its_ttl_and_unset_keeps_the_cluster():
    w = _succeeded(make_spec(cleanup={"policy": "Never", "ttlSecondsAfterFinished": 600}))
    end = w.status.completion_time
    w.tick(60)
    w.spec = make_spec(cleanup={"policy": "Always", "ttlSecondsAfterFinished": 600})
    d = w.step()
    assert not d.actions and w.last.requeue_after == 540 and lc.waits_for_cleanup(w.status)
    assert w.status.cleanup_after == lc.format_time(lc.parse_time(end) + timedelta(seconds=600))
    w.spec = make_spec(cleanup={"policy": "Never", "ttlSecondsAfterFinished": 600})  # changed their mind
    w.tick(600)
    assert not w.step().actions and w.status.cleanup_after is None and not lc.waits_for_cleanup(w.status)


def test_existing_cluster_is_never_cleaned_up():
    spec = make_spec(cluster=None, existingCluster={"name": "shared"}, cleanup={"policy": "Always", "ttlSecondsAfterFinished": 0})
    w = World(spec)
    shared = ClusterView(exists=True, ready=True, owned=False)
    w.step(cluster=shared)
    w.tick(5)
    w.step(cluster=shared)
    w.step(cluster=shared, job=w.job(RayJobState.SUCCEEDED))
    w.tick(10)
    assert not lc.polls(w.status) and not w.step().actions


# ---------------------------------------------------------------- deletion


def test_delete_stops_the_job_and_deletes_our_cluster_before_finalizing():
    w = World().running()
    d = w.step(deleting=True, cluster=READY, persist=False)
    assert actions(d, StopJob) == [StopJob(w.status.job_id)]
    assert actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]
    assert not d.finalized
    d = w.step(deleting=True, cluster=ABSENT, persist=False)
    assert d.finalized and not actions(d, DeleteCluster)


def test_delete_on_an_existing_cluster_only_stops_the_job():
    spec = make_spec(cluster=None, existingCluster={"name": "shared"})
    w = World(spec, BackfillStatus(phase="Running", job_id="geneva-x-1", attempts=1, start_time="2026-03-01T12:00:00Z", udf_version="1"))
    d = w.step(deleting=True, cluster=ClusterView(exists=True, ready=True, owned=False), persist=False)
    assert actions(d, StopJob) == [StopJob("geneva-x-1")] and not actions(d, DeleteCluster) and d.finalized


def test_delete_after_finish_does_not_stop_anything():
    w = _succeeded(make_spec())
    d = w.step(deleting=True, cluster=READY, persist=False)
    assert not actions(d, StopJob) and actions(d, DeleteCluster)


# ---------------------------------------------------------------- bad input


def test_existing_cluster_missing_is_waited_for_until_the_startup_deadline():
    w = World(make_spec(cluster=None, existingCluster={"name": "nope"}, startupDeadlineSeconds=60))
    d = w.step(cluster=ABSENT)
    assert w.status.phase == "Pending" and w.status.reason == "ExistingClusterNotFound"
    assert w.status.message.startswith("spec.existingCluster.name")
    assert not actions(d, CreateCluster) and lc.polls(w.status)
    assert [e.reason for e in actions(d, RecordEvent) if e.type == "Warning"] == ["ExistingClusterNotFound"]
    w.tick(30)
    d = w.step(cluster=ABSENT)
    assert w.status.phase == "Pending" and not actions(d, RecordEvent)  # one warning, not one per poll
    w.tick(31)
    w.step(cluster=ABSENT)
    assert w.status.phase == "Failed" and w.status.reason == "StartupDeadlineExceeded"
    assert "RayCluster nope not found" in w.status.message


def test_existing_cluster_appearing_ends_the_wait():
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    w.step(cluster=ABSENT)
    w.tick(5)
    d = w.step(cluster=replace(READY, owned=False))
    assert len(actions(d, SubmitJob)) == 1 and w.status.reason == "JobSubmitted"
    assert cond(w.status, "ClusterReady").status == "True"


def test_existing_cluster_gone_under_our_job_fails():
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=replace(READY, owned=False))
    w.tick(5)
    w.step(cluster=replace(READY, owned=False), job=w.job(RayJobState.RUNNING))
    assert w.status.phase == "Running"
    w.step(cluster=ABSENT)
    assert w.status.phase == "Failed" and w.status.reason == "ExistingClusterNotFound"


MISSING_SECRET = SecretMissing("spec.auth.tokenSecretRef", "Secret ray-token not found", may_clear=True)


def test_missing_secret_is_waited_for_and_no_cluster_created_meanwhile():
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}, startupDeadlineSeconds=60))
    d = w.step(cluster=ABSENT, secret=MISSING_SECRET)
    assert w.status.phase == "Pending" and w.status.reason == "AuthSecretNotFound"
    assert "spec.auth.tokenSecretRef" in w.status.message
    assert cond(w.status, "ClusterReady").reason == "AuthSecretNotFound"
    assert not actions(d, CreateCluster) and lc.polls(w.status)
    w.tick(5)
    d = w.step(cluster=ABSENT)  # the Secret was applied
    assert actions(d, CreateCluster) == [CreateCluster("bf-ray")] and w.status.phase == "Provisioning"


def test_missing_secret_fails_at_the_startup_deadline_naming_it():
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}, startupDeadlineSeconds=60))
    w.step(cluster=ABSENT, secret=MISSING_SECRET)
    w.tick(61)
    d = w.step(cluster=ABSENT, secret=MISSING_SECRET)
    assert w.status.phase == "Failed" and w.status.reason == "StartupDeadlineExceeded"
    assert "Secret ray-token not found" in w.status.message
    assert not actions(d, CreateCluster) and not lc.polls(w.status)


def test_an_unreadable_secret_fails_at_once():
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}))
    problem = SecretMissing("spec.auth.tokenSecretRef", "Secret ray-token has no key 'token'")
    d = w.step(cluster=ABSENT, secret=problem)
    assert w.status.phase == "Failed" and w.status.reason == "AuthSecretNotFound"
    assert not actions(d, CreateCluster) and not lc.polls(w.status)


def test_invalid_spec_fails_once():
    w = World()
    problem = SpecInvalid("spec.udf", "bad")
    w.step(spec=None, spec_error=problem)
    assert w.status.phase == "Failed" and w.status.reason == "InvalidSpec"
    assert not w.step(spec=None, spec_error=problem).actions


def test_a_foreign_cluster_with_our_name_is_not_taken_over():
    w = World()
    d = w.step(cluster=ClusterView(exists=True, ready=True, owned=False))
    assert w.status.reason == "ClusterNameConflict" and not actions(d, DeleteCluster) and not actions(d, PatchCluster)


# ---------------------------------------------------------------- cluster drift


def test_in_place_patch_is_applied_even_while_running():
    w = World().running()
    d = w.step(cluster=replace(READY, patch={"spec": {"x": 1}}), job=w.job(RayJobState.RUNNING))
    assert actions(d, PatchCluster) == [PatchCluster("bf-ray", {"spec": {"x": 1}})]


def test_recreate_waits_until_no_job_runs():
    w = World().running()
    d = w.step(cluster=replace(READY, recreate=("image",)), job=w.job(RayJobState.RUNNING))
    assert not actions(d, DeleteCluster) and "image" in cond(w.status, "ClusterReady").message
    w2 = World()
    w2.step(cluster=ABSENT)
    d = w2.step(cluster=replace(READY, ready=False, recreate=("image",)))
    assert actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]


# ---------------------------------------------------------------- conditions and helpers


def test_last_transition_time_only_moves_when_status_flips():
    w = World()
    w.step(cluster=ABSENT)
    t_created = cond(w.status, "ClusterReady").last_transition_time
    w.tick(10)
    w.step(cluster=replace(READY, ready=False, message="other"))
    assert cond(w.status, "ClusterReady").last_transition_time == t_created
    w.tick(10)
    w.step(cluster=READY)
    assert cond(w.status, "ClusterReady").last_transition_time == lc.format_time(w.now)


def test_the_timers_only_ask_whether_the_stored_state_polls():
    assert lc.polls(BackfillStatus())  # a status from before `state`: reconciled once, to adopt it
    for state in ("New", "WaitingForInputs", "CreatingCluster", "WaitingForCluster", "Preparing", "Submitting",
                  "Running", "Retrying", "Suspending"):
        assert lc.polls(BackfillStatus(state=state)), state
    for state in ("Suspended", "Succeeded", "Failed"):
        assert not lc.polls(BackfillStatus(state=state)), state
    assert lc.waits_for_cleanup(BackfillStatus(state="Succeeded", cleanup_after="2026-01-01T00:00:00Z"))
    assert not lc.waits_for_cleanup(BackfillStatus(state="Succeeded"))
    assert not lc.waits_for_cleanup(BackfillStatus(state="Running", cleanup_after="2026-01-01T00:00:00Z"))


def test_submission_id_is_deterministic_and_unique_per_run_and_attempt():
    a = lc.submission_id(UID, "2026-03-01T12:00:00Z", 1)
    assert a == lc.submission_id(UID, "2026-03-01T12:00:00Z", 1) == "geneva-4f1c2d3e-20260301t120000-1"
    assert len({a, lc.submission_id(UID, "2026-03-01T12:00:00Z", 2), lc.submission_id(UID, "2026-03-01T12:00:01Z", 1)}) == 3


def test_bound_log_tail_limits_lines_and_bytes():
    assert lc.bound_log_tail(None) is None
    text = "\n".join("x" * 500 for _ in range(50))
    tail = lc.bound_log_tail(text)
    assert len(tail.encode()) <= lc.LOG_TAIL_BYTES and tail.startswith("x") and len(tail.splitlines()) < 30
    assert lc.bound_log_tail("a\nb\nc\n", lines=2) == "b\nc"


@pytest.mark.parametrize("n,text", [(0, "0"), (999, "999"), (4_100, "4.1K"), (4_100_000, "4.1M"), (2_500_000_000, "2.5B")])
def test_human_count(n, text):
    assert lc.human_count(n) == text


def test_outdated_cluster_is_recreated_between_attempts():
    w = World().running()
    outdated = replace(READY, recreate=("image",))
    d = w.step(cluster=outdated, job=w.job(RayJobState.FAILED, message="x"))
    assert not actions(d, SubmitJob) and w.status.attempts == 2 and w.status.job_id is None
    w.tick(5)
    d = w.step(cluster=outdated)
    assert actions(d, DeleteCluster) == [DeleteCluster("bf-ray")]
    w.tick(5)
    assert actions(w.step(cluster=ABSENT), CreateCluster)
    w.tick(5)
    assert actions(w.step(cluster=READY), SubmitJob)[0].attempt == 2


def test_cluster_outdated_condition_says_a_change_waits_and_clears_after_the_recreate():
    w = World().running()
    assert lc.condition(w.status, "ClusterOutdated") is None  # absent until it matters
    outdated = replace(READY, recreate=("image", "workerGroups[cpu].resources"))
    d = w.step(cluster=outdated, job=w.job(RayJobState.RUNNING))
    c = cond(w.status, "ClusterOutdated")
    assert (c.status, c.reason) == ("True", "SpecChanged") and "workerGroups[cpu].resources" in c.message
    assert "suspend and resume" in c.message and not actions(d, DeleteCluster)
    assert [(e.type, e.reason) for e in actions(d, RecordEvent)] == [("Warning", "ClusterOutdated")]
    w.tick(5)
    d = w.step(cluster=outdated, job=w.job(RayJobState.RUNNING))
    assert not actions(d, RecordEvent)  # said once
    w.tick(5)
    w.step(cluster=outdated, job=w.job(RayJobState.FAILED, message="x"))  # attempt 2 is due: recreate first
    w.tick(5)
    assert actions(w.step(cluster=outdated), DeleteCluster)
    w.tick(5)
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=READY)
    assert (cond(w.status, "ClusterOutdated").status, cond(w.status, "ClusterOutdated").reason) == ("False", "UpToDate")


# ---------------------------------------------------------------- an image without the engine, pods that cannot start

NO_ENGINE_LOG = ("/home/ray/anaconda3/bin/python: Error while finding module specification for "
                 "'geneva_operator.engine.job' (ModuleNotFoundError: No module named 'geneva_operator')\n")
DEFAULT_IMAGE = "ghcr.io/lancedb/geneva-ray-worker:0.1.0"


def test_a_job_that_cannot_import_the_engine_fails_at_once_naming_the_image_and_the_fix():
    w = World(make_spec(cluster={"image": "rayproject/ray:2.60.0-py311"}, backoffLimit=2)).running()
    on = replace(READY, image="rayproject/ray:2.60.0-py311")
    d = w.step(cluster=on, job=w.job(RayJobState.FAILED, message="exit code 1", log_tail=NO_ENGINE_LOG), default_image=DEFAULT_IMAGE)
    assert w.status.phase == "Failed" and w.status.reason == "EngineNotInImage" and w.status.attempts == 1
    assert not actions(d, SubmitJob)
    assert w.status.message == (
        "spec.cluster.image: image rayproject/ray:2.60.0-py311 lacks the backfill engine (No module named 'geneva_operator'): "
        f"unset spec.cluster.image to use the geneva ray-worker image ({DEFAULT_IMAGE}), or install geneva-operator[engine] "
        "into it (see the Dockerfile's ray-worker target)")
    assert cond(w.status, "Failed").reason == "EngineNotInImage"
    assert w.status.log_tail == NO_ENGINE_LOG.strip()  # kept, but the reason already says it all


def test_the_engine_missing_from_the_operators_default_image_points_at_the_operator_setting():
    w = World(make_spec(cluster={})).running()
    w.step(cluster=replace(READY, image="registry.local/ray:2.60.0"),
           job=w.job(RayJobState.FAILED, message="Job entrypoint command failed with exit code 1 ...\n"
                     "ModuleNotFoundError: No module named 'lancedb'"))
    assert w.status.reason == "EngineNotInImage"
    assert w.status.message.startswith("spec.cluster.image: the operator's default Ray image registry.local/ray:2.60.0 "
                                       "lacks the backfill engine (No module named 'lancedb'): point the operator's rayImage")


def test_the_engine_missing_from_an_existing_cluster_names_that_cluster():
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"})).running()
    w.step(cluster=replace(READY, owned=False, image="team/ray:1"), job=w.job(RayJobState.FAILED, log_tail=NO_ENGINE_LOG))
    assert w.status.reason == "EngineNotInImage"
    assert w.status.message.startswith("spec.existingCluster.name: RayCluster shared runs image team/ray:1, which lacks")


def test_a_udf_module_missing_from_the_image_is_an_ordinary_failed_attempt():
    w = World().running()
    log = "error: spec.udf.function: cannot import module 'my_udfs': No module named 'my_udfs'\n"
    d = w.step(cluster=READY, job=w.job(RayJobState.FAILED, log_tail=log))
    assert w.status.reason == "JobFailed" and actions(d, SubmitJob)


IMAGE_PULL = PodProblem("ImagePullFailed", 'head pod bf-ray-head-1: image x:1: ErrImageNeverPull: Container image "x:1" is '
                        "not present with pull policy of Never")
UNSCHEDULABLE = PodProblem("Unschedulable", "worker group gpu (pod bf-ray-gpu-worker-1) is unschedulable (node selector "
                           "geneva.lancedb.com/ray-worker-gpu=true): 0/4 nodes are available: 4 node(s) didn't match "
                           "Pod's node affinity/selector.")


@pytest.mark.parametrize("problem, ready", [(IMAGE_PULL, False), (UNSCHEDULABLE, True)])
def test_pods_that_cannot_start_show_why_and_fail_at_the_startup_deadline_with_that_reason(problem, ready):
    # A ready head with workers no node takes is no cluster for the job either: it would hang.
    w = World(make_spec(startupDeadlineSeconds=60))
    w.step(cluster=ABSENT)
    w.tick(30)
    stuck = replace(READY, ready=ready, pod_problem=problem)
    d = w.step(cluster=stuck)
    assert w.status.phase == "Provisioning" and not actions(d, SubmitJob)
    assert (cond(w.status, "ClusterReady").reason, cond(w.status, "ClusterReady").message) == (problem.reason, problem.message)
    assert w.status.message == f"waiting for RayCluster bf-ray: {problem.message}"
    w.tick(31)
    w.step(cluster=stuck)
    assert w.status.phase == "Failed" and w.status.reason == problem.reason
    assert w.status.message == f"spec.startupDeadlineSeconds: not running after 60s: {problem.message}"


def test_pods_that_start_after_all_end_the_wait():
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=replace(READY, pod_problem=UNSCHEDULABLE))
    w.tick(5)
    d = w.step(cluster=READY)
    assert actions(d, SubmitJob) and cond(w.status, "ClusterReady").reason == "Ready"


def test_an_invalid_image_name_fails_at_once():
    w = World()
    w.step(cluster=ABSENT)
    w.tick(5)
    invalid = PodProblem("ImagePullFailed", "head pod bf-ray-head-1: image Ray:Latest: InvalidImageName: ...", permanent=True)
    w.step(cluster=replace(READY, ready=False, pod_problem=invalid))
    assert w.status.phase == "Failed" and w.status.reason == "ImagePullFailed"
    assert w.status.message == "RayCluster bf-ray: head pod bf-ray-head-1: image Ray:Latest: InvalidImageName: ..."


def test_pod_trouble_under_a_submitted_job_is_the_jobs_business():
    # e.g. the autoscaler adding a worker no node takes: the job runs on the workers it has.
    w = World().running()
    d = w.step(cluster=replace(READY, pod_problem=UNSCHEDULABLE), job=w.job(RayJobState.RUNNING))
    assert w.status.phase == "Running" and not d.actions


def test_a_shared_existing_cluster_with_a_ready_head_is_not_held_back_by_its_other_groups():
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    w.step(cluster=replace(READY, owned=False, pod_problem=UNSCHEDULABLE))
    assert cond(w.status, "ClusterReady").reason == "Ready"
    w.tick(5)
    d = w.step(cluster=replace(READY, owned=False, pod_problem=UNSCHEDULABLE))
    assert actions(d, SubmitJob)
    stuck_head = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    stuck_head.step(cluster=replace(READY, owned=False, ready=False, pod_problem=IMAGE_PULL))
    assert cond(stuck_head.status, "ClusterReady").reason == "ImagePullFailed"


# ---------------------------------------------------------------- the states


def test_the_first_attempt_goes_through_the_starting_states_and_a_retry_keeps_the_phase_running():
    w = World(make_spec(backoffLimit=1))
    seen = []

    def step(**kw: Any) -> None:
        w.tick(5)
        w.step(**kw)
        seen.append((w.status.state, w.status.phase))

    step(cluster=ABSENT)
    step(cluster=replace(READY, ready=False))
    step(cluster=READY)
    step(cluster=READY, job=w.job(RayJobState.PENDING))
    step(cluster=READY, job=w.job(RayJobState.RUNNING))
    step(cluster=ABSENT)  # lost under the job: the retry recreates it
    step(cluster=READY)
    step(cluster=READY, job=w.job(RayJobState.PENDING))
    step(cluster=READY, job=w.job(RayJobState.RUNNING))
    step(cluster=READY, job=w.job(RayJobState.SUCCEEDED))
    assert seen == [
        ("CreatingCluster", "Provisioning"), ("WaitingForCluster", "Provisioning"), ("Submitting", "Provisioning"),
        ("Submitting", "Provisioning"), ("Running", "Running"), ("Retrying", "Running"), ("Retrying", "Running"),
        ("Retrying", "Running"), ("Running", "Running"), ("Succeeded", "Succeeded"),
    ]
    assert w.status.attempts == 2


def test_a_job_that_fails_before_it_ran_is_retried_from_the_starting_states():
    w = World(make_spec(backoffLimit=1))
    w.step(cluster=ABSENT)
    w.tick(5)
    w.step(cluster=READY)
    w.tick(5)
    d = w.step(cluster=READY, job=w.job(RayJobState.FAILED, message="exit 1"))
    assert (w.status.state, w.status.phase, w.status.attempts) == ("Submitting", "Provisioning", 2)
    assert actions(d, SubmitJob)[0].attempt == 2


def test_a_run_started_with_the_cluster_ready_is_recorded_before_it_submits():
    w = World(make_spec(cluster=None, existingCluster={"name": "shared"}))
    shared = ClusterView(exists=True, ready=True, owned=False)
    w.step(cluster=shared)
    assert (w.status.state, w.status.phase, w.status.reason) == ("Preparing", "Provisioning", "Preparing")
    w.tick(5)
    assert actions(w.step(cluster=shared), SubmitJob) and w.status.state == "Submitting"


def test_waiting_for_an_input_is_a_state_of_its_own():
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}))
    w.step(cluster=ABSENT, secret=MISSING_SECRET)
    assert (w.status.state, w.status.phase) == ("WaitingForInputs", "Pending")
    assert lc.polls(w.status)


def test_suspension_is_two_states_and_only_the_settled_one_stops_polling():
    w = World().running()
    w.spec = make_spec(suspend=True)
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    assert (w.status.state, w.status.phase) == ("Suspending", "Suspended") and lc.polls(w.status)
    w.step(cluster=ABSENT)
    assert (w.status.state, w.status.phase) == ("Suspended", "Suspended") and not lc.polls(w.status)


def test_the_phase_is_computed_from_the_state_never_read_back():
    w = World().running()
    w.status = w.status.model_copy(update={"phase": "Pending", "reason": "Whatever"})  # a tampered status
    w.step(cluster=READY, job=w.job(RayJobState.RUNNING))
    assert (w.status.state, w.status.phase) == ("Running", "Running")


# ---------------------------------------------------------------- problems, ranked in one place


def test_a_refused_action_is_observed_by_the_next_reconcile_and_fails_the_backfill():
    from geneva_operator.api.models import ActionError

    w = World()
    w.step(cluster=ABSENT)
    refused = ActionError(action="CreateCluster", reason="ClusterRejected", field="spec.cluster", message="422 invalid")
    w.status = w.status.model_copy(update={"last_action_error": refused})  # what the handlers record
    w.tick(1)
    d = w.step(cluster=ABSENT)
    assert (w.status.state, w.status.reason) == ("Failed", "ClusterRejected")
    assert w.status.message == "spec.cluster: 422 invalid" and not actions(d, CreateCluster)


def test_the_highest_ranked_problem_wins_whatever_else_is_observed():
    column = lc.ColumnHeld("ns/other", "GenevaBackfill ns/other is backfilling column 'out'")
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}))
    w.step(cluster=ABSENT, column=column, secret=MISSING_SECRET)
    assert w.status.reason == "AuthSecretNotFound"  # our own input first: the column may free up meanwhile
    w.step(cluster=ABSENT, column=column)
    assert w.status.reason == "ColumnBusy" and w.status.state == "WaitingForInputs"
    refused = lc.RayAuthRefused("403 Forbidden")
    w.step(cluster=ABSENT, column=column, ray_auth=refused)
    assert w.status.reason == "RayAuthenticationFailed" and w.status.state == "Failed"



def test_a_spec_the_installed_kuberay_cannot_serve_fails_before_any_input_is_waited_for():
    # An edit (or a KubeRay upgrade) is the way out: waiting for the Secret first would only delay it.
    too_old = lc.KubeRayTooOld("spec.cluster.gcsFaultTolerance", "needs KubeRay >= 1.3 (RayCluster spec.gcsFaultToleranceOptions)")
    w = World(make_spec(auth={"tokenSecretRef": {"name": "ray-token"}}))
    d = w.step(cluster=ABSENT, secret=MISSING_SECRET, kuberay=too_old)
    assert (w.status.state, w.status.reason) == ("Failed", "KubeRayTooOld")
    assert w.status.message == "spec.cluster.gcsFaultTolerance: needs KubeRay >= 1.3 (RayCluster spec.gcsFaultToleranceOptions)"
    assert not actions(d, CreateCluster)
    unknown = lc.KubeRayUnknown("spec.cluster.gcsFaultTolerance", "grant it get on it")
    w = World()
    w.step(cluster=ABSENT, kuberay=unknown)
    assert (w.status.state, w.status.reason) == ("Failed", "KubeRayUnknown")

# ---------------------------------------------------------------- statuses of the operator before `state`

LEGACY = {c["name"]: c for c in json.loads((Path(__file__).parent / "legacy_statuses.json").read_text())}
SHARED = ClusterView(exists=True, ready=True, owned=False)


def _legacy_world(name: str) -> World:
    captured = LEGACY[name]
    w = World(BackfillSpec.model_validate(captured["spec"]), BackfillStatus.model_validate(captured["status"]))
    w.now = datetime.fromisoformat(captured["now"]) + timedelta(seconds=5)
    return w


# name -> (what is observed next, the adopted state after that reconcile)
ADOPTIONS = {
    "pending-secret": (dict(cluster=ABSENT, secret=MISSING_SECRET), "WaitingForInputs"),
    "pending-column-busy": (dict(cluster=ABSENT, column=lc.ColumnHeld("ns/other", "busy")), "WaitingForInputs"),
    "provisioning-creating": (dict(cluster=replace(READY, ready=False)), "WaitingForCluster"),
    "provisioning-waiting": (dict(cluster=replace(READY, ready=False)), "WaitingForCluster"),
    "provisioning-submitted": (dict(cluster=READY, job="PENDING"), "Submitting"),
    "provisioning-job-pending": (dict(cluster=READY, job="PENDING"), "Submitting"),
    "running": (dict(cluster=READY, job="RUNNING"), "Running"),
    "running-retry-submitted": (dict(cluster=READY, job="RUNNING"), "Running"),
    "running-retrying": (dict(cluster=replace(READY, ready=False)), "Retrying"),
    "running-cluster-lost": (dict(cluster=replace(READY, ready=False)), "Retrying"),
    "suspended-suspending": (dict(cluster=ABSENT), "Suspended"),
    "suspended-idle": (dict(), "Suspended"),
    "suspended-existing-stopping": (dict(cluster=SHARED, job="STOPPED"), "Suspended"),
    "succeeded-cleanup-pending": (dict(), "Succeeded"),
    "succeeded-cleaned-up": (dict(), "Succeeded"),
    "succeeded-kept": (dict(), "Succeeded"),
    "failed-backoff": (dict(), "Failed"),
    "failed-invalid-spec": (dict(spec=None, spec_error=SpecInvalid("spec.udf", "bad")), "Failed"),
    "failed-startup-deadline": (dict(), "Failed"),
}


def test_every_captured_phase_has_an_adoption():
    assert set(ADOPTIONS) == set(LEGACY)


@pytest.mark.parametrize("name", sorted(ADOPTIONS))
def test_a_status_of_the_operator_before_state_is_adopted_keeping_its_run_attempt_and_job(name):
    w = _legacy_world(name)
    before = w.status
    assert before.state is None
    seen, state = ADOPTIONS[name]
    if "job" in seen:
        seen = {**seen, "job": w.job(RayJobState(seen["job"]))}
    d = w.step(**seen)
    assert w.status.state == state
    assert (w.status.udf_version, w.status.start_time, w.status.attempts) == \
        (before.udf_version, before.start_time, before.attempts)
    assert w.status.job_id == before.job_id
    assert not actions(d, SubmitJob)
    assert not actions(d, StopJob) or name == "suspended-suspending"  # stopping until the cluster is seen gone
    assert w.status.phase == lc.PHASE[lc.State(state)].value
    if before.phase != "Suspended":
        assert w.status.phase == before.phase  # adopting changes nothing a user sees


def test_an_adopted_finished_status_still_deletes_its_cluster_after_the_ttl_and_only_then():
    w = _legacy_world("succeeded-cleanup-pending")
    w.step()
    finished = datetime.fromisoformat(w.status.completion_time.replace("Z", "+00:00"))
    assert lc.waits_for_cleanup(w.status) and w.status.cleanup_after == lc.format_time(finished + timedelta(seconds=600))
    assert not actions(w.step(), DeleteCluster)
    w.now = finished + timedelta(seconds=600)
    assert actions(w.step(cluster=READY), DeleteCluster) == [DeleteCluster("bf-ray")]
    done = _legacy_world("succeeded-cleaned-up")
    done.tick(3600)
    assert lc.needs(done.spec, done.status, done.now).cluster  # its cluster is seen gone: no event, nothing to wait for
    assert not done.step(cluster=ABSENT).actions and not lc.waits_for_cleanup(done.status)


def test_an_adopted_retry_submits_the_attempt_it_was_due_with_the_same_run_start():
    w = _legacy_world("running-retrying")
    d = w.step(cluster=READY)
    [submit] = actions(d, SubmitJob)
    assert submit == SubmitJob(lc.submission_id(UID, w.status.start_time, 2), 2) and w.status.phase == "Running"
