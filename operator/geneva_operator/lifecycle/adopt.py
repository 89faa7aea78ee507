"""The state of a status written before `status.state` existed (an operator upgrade).

Such a status says where its run is only through its phase, jobId and a few reasons; this
is the one place that reads them, once: the next status written carries the state. Runs,
attempts and job ids are kept as they are, so the job of the current attempt is followed on.
"""
from __future__ import annotations

from typing import Optional

from ..api.models import BackfillSpec, BackfillStatus, Phase, State

# Pending reasons of a run waiting for something to appear (a Secret, an existingCluster, the column).
_WAIT_REASONS = frozenset({"AuthSecretNotFound", "ExistingClusterNotFound", "ColumnBusy"})


def adopt(spec: Optional[BackfillSpec], status: BackfillStatus) -> State:
    if status.state is not None:
        return State(status.state)
    phase = status.phase
    if phase in (Phase.Succeeded.value, Phase.Failed.value):
        return State.Succeeded if phase == Phase.Succeeded.value else State.Failed
    if phase is None or not status.start_time:
        return State.New
    if phase == Phase.Pending.value:
        return State.WaitingForInputs if status.reason in _WAIT_REASONS else State.New
    if phase == Phase.Provisioning.value:
        if status.job_id:
            return State.Submitting
        return {"CreatingCluster": State.CreatingCluster, "Preparing": State.Preparing}.get(
            status.reason or "", State.WaitingForCluster)
    if phase == Phase.Running.value:
        return State.Running if status.job_id else State.Retrying
    if phase == Phase.Suspended.value:
        settled = any(c.type == "Suspended" and c.reason == "Suspended" for c in status.conditions)
        return State.Suspended if settled else State.Suspending
    return State.New
