"""One run of a backfill as the engine knows it: its identity, fixed when it starts, and its
counters, which only grow (or shrink, for work another writer undid) as results arrive.

A run is one computation of a udf version over the selected rows of a column. Two attempts
are the same run when they agree on the udf key (column, function, version, types), `where`
and `mode`: an attempt that finds checkpoint records of a dead attempt of the same run
adopts its run id (checkpoint.Checkpoints.resume_run_id), so that mode All tells the rows
this run already did from those an earlier run did. The operator's own attempt numbers
never reach the engine: the records are how it knows.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from ..api.job_contract import BackfillWork
from ..api.models import Mode
from .table import TableLocation
from .udf import udf_key

if TYPE_CHECKING:
    from .checkpoint import Checkpoints
    from .execute import FragmentResult


def _as_recorded(key: str, where: Optional[str], mode: str) -> dict:
    """A run's identity in the form every checkpoint record of the run carries."""
    return {"key": key, "where": where or "", "mode": Mode(mode).value}


def run_identity(work: BackfillWork, key: str) -> dict:
    """What makes two attempts the same run: a retry with this identity resumes the run."""
    return _as_recorded(key, work.where, work.mode)


@dataclass(frozen=True)
class RunIdentity:
    """The facts that identify the run, fixed when it starts."""

    table: TableLocation
    column: str
    udf_version: str
    key: str  # udf.udf_key: what a row must have been computed by to count as done
    where: Optional[str]
    mode: str
    run_id: str  # new, or adopted from the records of a dead attempt of this run

    @classmethod
    def start(cls, work: BackfillWork, table: TableLocation, checkpoints: "Checkpoints") -> "RunIdentity":
        key = udf_key(work.udf, work.column)
        run_id = checkpoints.resume_run_id(run_identity(work, key)) or os.urandom(12).hex()
        return cls(table, work.column, work.udf.version, key, work.where, Mode(work.mode).value, run_id)

    @property
    def as_recorded(self) -> dict:
        return _as_recorded(self.key, self.where, self.mode)


@dataclass
class RunCounters:
    """What a run did so far. The totals count this run's work, not the table: the rows it
    planned to write (selected, not done yet) and the fragments they are in. When another
    writer rewrites a fragment before its commit, its rows are planned again from the new
    fragments: the totals become what is done plus what the new plan holds, so done never
    exceeds total."""

    fragments_total: int = 0
    rows_total: int = 0
    # Done: computed in this run or by an earlier attempt (resumed from its checkpoint).
    fragments_done: int = 0
    rows_done: int = 0
    rows_computed: int = 0  # rows the udf saw in this run
    rows_discarded: int = 0  # of rows_computed: their fragment was rewritten by another writer first
    udf_calls: int = 0  # batches for Batch/RecordBatch functions, rows for Scalar
    # Of the done ones, those in the table: what a failed run leaves in the column.
    commits: int = 0
    fragments_committed: int = 0
    rows_committed: int = 0

    def planned(self, fragments: int, rows: int) -> None:
        """A plan (the first, or one after a rewrite) holds this much still to do."""
        self.fragments_total, self.rows_total = self.fragments_done + fragments, self.rows_done + rows

    def computed(self, r: "FragmentResult") -> None:
        self.fragments_done += 1
        self.rows_done += r.rows
        self.rows_computed += r.rows_computed
        self.udf_calls += r.udf_calls

    def discarded(self, r: "FragmentResult") -> None:
        """A computed fragment was rewritten by another writer before we committed it."""
        self.fragments_done -= 1
        self.rows_done -= r.rows
        self.rows_discarded += r.rows_computed

    def committed(self, group: list["FragmentResult"]) -> None:
        self.commits += 1
        self.fragments_committed += len(group)
        self.rows_committed += sum(r.rows for r in group)
