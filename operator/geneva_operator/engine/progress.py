"""Progress sinks: where the engine reports how far it got.

A sink gets a `ProgressUpdate` whenever fragments finish or a commit lands, and `close()`
at the end. The terminal sink draws a tqdm bar; the log-line sink prints the reports the
operator parses from the Ray driver log (api.job_contract); sinks can be combined.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Optional, Protocol, TextIO

from ..api.job_contract import ProgressReport
from .run import RunCounters


@dataclass(frozen=True)
class ProgressUpdate:
    fragments_done: int
    fragments_total: int
    rows_done: int
    rows_total: int
    rows_per_second: Optional[float]
    table_version: Optional[int]
    # Of the done ones, those in the table (committed) and the udf version they hold: what a
    # failed run leaves in the column (done rows not committed yet are only checkpoints).
    fragments_committed: int = 0
    rows_committed: int = 0
    udf_version: Optional[str] = None

    def to_report(self) -> ProgressReport:
        rate = round(self.rows_per_second, 1) if self.rows_per_second is not None else None
        return ProgressReport(fragments_done=self.fragments_done, fragments_total=self.fragments_total,
                              rows_done=self.rows_done, rows_total=self.rows_total,
                              fragments_committed=self.fragments_committed, rows_committed=self.rows_committed,
                              udf_version=self.udf_version, rows_per_second=rate, table_version=self.table_version)


class ProgressSink(Protocol):
    def update(self, p: ProgressUpdate) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    def update(self, p: ProgressUpdate) -> None:
        pass

    def close(self) -> None:
        pass


class LogLineProgress:
    """GENEVA_PROGRESS lines, at most one per `min_interval` seconds except on commits."""

    def __init__(self, stream: TextIO = sys.stdout, min_interval: float = 2.0):
        self.stream, self.min_interval = stream, min_interval
        self._last_time = 0.0
        self._last_version: Optional[int] = None

    def update(self, p: ProgressUpdate) -> None:
        now = time.monotonic()
        if p.table_version == self._last_version and now - self._last_time < self.min_interval and p.fragments_done < p.fragments_total:
            return
        self._last_time, self._last_version = now, p.table_version
        print(p.to_report().line(), file=self.stream, flush=True)

    def close(self) -> None:
        pass


class TerminalProgress:
    """A tqdm bar counting rows, with fragments and the table version in the postfix."""

    def __init__(self, stream: TextIO = sys.stderr, desc: str = "backfill"):
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit="row", unit_scale=True, desc=desc, file=stream, dynamic_ncols=True)

    def update(self, p: ProgressUpdate) -> None:
        bar = self._bar
        if bar.total != p.rows_total:
            bar.total = p.rows_total
        bar.update(p.rows_done - bar.n)
        postfix = f"fragments {p.fragments_done}/{p.fragments_total}"
        if p.table_version is not None:
            postfix += f", version {p.table_version}"
        bar.set_postfix_str(postfix, refresh=True)

    def close(self) -> None:
        self._bar.close()


class MultiProgress:
    def __init__(self, *sinks: ProgressSink):
        self.sinks = sinks

    def update(self, p: ProgressUpdate) -> None:
        for s in self.sinks:
            s.update(p)

    def close(self) -> None:
        for s in self.sinks:
            s.close()


class ProgressTracker:
    """Feeds a sink with a run's counters (run.RunCounters) whenever they move."""

    def __init__(self, sink: ProgressSink, counters: RunCounters, udf_version: Optional[str] = None):
        self.sink, self.counters, self.udf_version = sink, counters, udf_version
        self.table_version: Optional[int] = None  # of our newest commit
        self.started = time.monotonic()

    def rate(self) -> Optional[float]:
        elapsed = time.monotonic() - self.started
        done = self.counters.rows_done
        return done / elapsed if elapsed > 0 and done else None

    def emit(self) -> None:
        c = self.counters
        self.sink.update(ProgressUpdate(c.fragments_done, c.fragments_total, c.rows_done, c.rows_total, self.rate(),
                                        self.table_version, c.fragments_committed, c.rows_committed, self.udf_version))
