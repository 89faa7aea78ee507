"""`decide`: the guards every state shares, then one dispatch from the state to its step.
Plus what the handlers ask of the state without deciding: what to observe, whether to poll."""
from __future__ import annotations

from datetime import datetime
from typing import Callable, Optional

from ..api.models import BackfillSpec, BackfillStatus, State
from .actions import Decision
from .adopt import adopt
from .facts import Needs, Observed, SpecInvalid, blocking
from .step import FINISHED, Step, cleanup_time
from .steps import deadline_exceeded, finalize, finished, follow_attempt, resume, retry, start_attempt, start_run, suspend, wait_for

# The table: each state and the step that moves it on. Suspending and Suspended are entered
# and left by guards (spec.suspend), so their step is `suspend` whatever the state.
STEPS: dict[State, Callable[[Step], Decision]] = {
    State.New: start_attempt,
    State.WaitingForInputs: start_attempt,
    State.CreatingCluster: start_attempt,
    State.WaitingForCluster: start_attempt,
    State.Preparing: start_attempt,
    State.Submitting: follow_attempt,
    State.Running: follow_attempt,
    State.Retrying: retry,
    State.Suspending: suspend,
    State.Suspended: suspend,
    State.Succeeded: finished,
    State.Failed: finished,
}
SUSPENSION = frozenset({State.Suspending, State.Suspended})

# States a periodic reconcile must look at: something can change without a spec change.
POLLING = frozenset(STEPS) - FINISHED - {State.Suspended}


def decide(o: Observed) -> Decision:
    s = Step(o, adopt(o.spec, o.status))
    if o.deleting:
        return finalize(s)
    if o.spec is None:
        if s.state == State.Failed:
            return s.decision()  # failed once; a valid spec is the way out
        err = o.spec_error or SpecInvalid("spec", "spec does not validate")
        return s.fail(err.reason, f"{err.field}: {err.message}")
    if new_run_needed(o.spec, s.status):
        start_run(s)
    if s.state in FINISHED:
        return STEPS[s.state](s)
    if o.spec.suspend:
        return suspend(s)
    if s.state in SUSPENSION:
        resume(s)
    problem = blocking(o, s.status)
    if problem is not None and not (problem.may_clear and not s.status.job_id):
        return s.fail(problem.reason, f"{problem.field}: {problem.message}")
    deadline = deadline_exceeded(s, problem)
    if deadline is not None:
        return deadline
    if problem is not None:
        return wait_for(s, problem)
    return STEPS[s.state](s)


def new_run_needed(spec: BackfillSpec, status: BackfillStatus) -> bool:
    return status.udf_version != spec.udf.version or not status.start_time


def state_of(spec: Optional[BackfillSpec], status: BackfillStatus) -> State:
    return adopt(spec, status)


def needs(spec: Optional[BackfillSpec], status: BackfillStatus, now: datetime, deleting: bool = False) -> Needs:
    if deleting:
        return Needs(cluster=True)
    if spec is None:
        return Needs()
    if new_run_needed(spec, status):
        return Needs(cluster=True, job_id=status.job_id, inputs=True)
    state = adopt(spec, status)
    if state in FINISHED:
        # Nothing to observe, but once the cleanup is due, whether our cluster is gone yet
        # (from the operator's watch cache: waiting for the TTL costs no request at all).
        due = cleanup_time(spec, state, status)
        return Needs(cluster=due is not None and now >= due)
    if state == State.Suspended and spec.suspend:
        return Needs()
    return Needs(cluster=True, job_id=status.job_id, inputs=True)


def polls(status: BackfillStatus) -> bool:
    """Whether the periodic reconcile must run, from the stored status alone: while the state
    is one that polls (a status without a state, from an older operator, once, to adopt it).
    Spec changes reconcile through the update handler; settled resources cost nothing."""
    return status.state is None or State(status.state) in POLLING


def waits_for_cleanup(status: BackfillStatus) -> bool:
    """Finished, with nothing left but deleting our cluster when its TTL runs out: a slow
    timer serves that, so hundreds of finished backfills do not tick every second."""
    return status.state is not None and State(status.state) in FINISHED and status.cleanup_after is not None


def follows_job(status: BackfillStatus) -> bool:
    """A job of the current attempt may run: its driver log is worth following."""
    if not status.job_id:
        return False
    if status.state is None:
        return status.phase in ("Provisioning", "Running")
    return State(status.state) in (State.Submitting, State.Running, State.Retrying)
