"""What `decide` asks the handlers to do, and the whole decision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from ..api.models import BackfillStatus


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
    # When to look again even if nothing is heard (seconds; None: only on a change). The
    # handlers' poll intervals bound it from below.
    requeue_after: Optional[float] = None
