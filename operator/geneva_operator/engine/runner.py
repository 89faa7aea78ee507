"""run_backfill: the engine's public entry point, shared by the CLI, the Ray job and benchmarks."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional, Union

from ..api.job_contract import BackfillWork, ResultReport, work_from_spec
from ..api.models import BackfillSpec
from .checkpoint import FoldInputs, fold, load_checkpoints
from .commit import Committer
from .errors import BackfillError
from .execute import FragmentResult, TaskContext, run_units
from .manifest import parse_spec
from .plan import Plan, plan
from .progress import NullProgress, ProgressSink, ProgressTracker
from .run import RunCounters, RunIdentity
from .table import TableLocation
from .udf import check_target

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # plan again when concurrent writers rewrote fragments we computed


@dataclass
class BackfillResult:
    """What a run did: its counters at the end (run.RunCounters says what they count), the
    table versions it read and left, and how long it took."""

    committed_version: int  # the table version after the run (the read version if nothing was committed)
    read_version: int  # the version the (first) plan pinned
    fragments_done: int
    fragments_total: int
    rows_done: int  # rows written into committed fragments (computed now or resumed from a checkpoint)
    rows_total: int
    rows_computed: int  # rows the udf saw in this run (excludes checkpoints resumed from earlier attempts)
    udf_calls: int  # function invocations (batches for Batch/RecordBatch, rows for Scalar)
    commits: int
    seconds: float
    rows_discarded: int = 0  # of rows_computed: outputs never committed, their fragment rewritten first

    @property
    def rows_per_second(self) -> float:
        return self.rows_done / self.seconds if self.seconds > 0 else 0.0

    def to_report(self) -> ResultReport:
        return ResultReport(fragments_done=self.fragments_done, fragments_total=self.fragments_total,
                            rows_done=self.rows_done, rows_total=self.rows_total,
                            rows_per_second=round(self.rows_per_second, 1), table_version=self.committed_version,
                            committed_version=self.committed_version, rows_computed=self.rows_computed,
                            rows_discarded=self.rows_discarded, commits=self.commits, seconds=round(self.seconds, 3))


def ensure_ray(ray_address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Connect to Ray: an address given, RAY_ADDRESS (a Ray job on a cluster), or else a lean
    local Ray started here (no dashboard), which outlives the call so repeated runs reuse it."""
    import warnings

    import ray

    if ray.is_initialized():
        return
    # Ray starts its processes with fork+exec, which is safe; lance and lancedb warn on any fork.
    warnings.filterwarnings("ignore", message=".*fork.*", category=UserWarning, module="lance")
    warnings.filterwarnings("ignore", message="lancedb fork support", category=RuntimeWarning)
    if ray_address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=ray_address or "auto", logging_level=logging.WARNING)
        return
    # Local workers inherit the environment: make the caller's modules (udfs) importable there.
    paths = [os.getcwd()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
             configure_logging=True)


def _coerce_spec(spec: Union[BackfillWork, BackfillSpec, dict]) -> BackfillWork:
    if isinstance(spec, BackfillWork):
        return spec
    return work_from_spec(spec) if isinstance(spec, BackfillSpec) else parse_spec(spec)


def run_backfill(spec: Union[BackfillWork, BackfillSpec, dict], *, progress: Optional[ProgressSink] = None,
                 ray_address: Optional[str] = None, num_cpus: Optional[int] = None) -> BackfillResult:
    """Fill spec.column of spec.table with the udf's output, resuming from checkpoints.

    Raises BackfillError (SpecError, UdfError, StorageError) naming the field at fault. Nothing
    is committed before the first group of fragments is computed, so a spec or udf that fails
    from the start leaves the table exactly as it was. `num_cpus`: of a local Ray started here."""
    started = time.monotonic()
    work = _coerce_spec(spec)
    sink = progress or NullProgress()
    loc = TableLocation.from_ref(work.table)
    ds = loc.open()  # first: a missing or unreachable table is reported as such
    if not (ray_address or os.environ.get("RAY_ADDRESS")):
        # The workers of a local Ray import the udf from this very environment: an import
        # error is theirs too, and found here costs no Ray start (10-30 s). A cluster's
        # workers may have modules this process lacks (image, runtimeEnv): left to them.
        check_target(work.udf)
    checkpoints = load_checkpoints(loc, work.column)
    run = RunIdentity.start(work, loc, checkpoints)
    counters = RunCounters()
    tracker = ProgressTracker(sink, counters, run.udf_version)
    fold_inputs = FoldInputs(known=dict(checkpoints.records), leftovers=bool(checkpoints.records))
    read_version = committed_version = None
    try:
        for round_no in range(MAX_ROUNDS):
            ds = ds if round_no == 0 else run.table.open()
            # Round 0 plans from the checkpoints read above; later rounds read them again (this
            # run's records now say which fragments it committed).
            p: Plan = plan(work, run.table, ds, run_id=run.run_id, checkpoints=checkpoints if round_no == 0 else None)
            read_version = read_version if read_version is not None else p.read_version
            committed_version = committed_version or p.read_version
            fold_inputs.planned(p)
            counters.planned(len(p.units), p.rows_total)
            tracker.emit()
            committer = Committer(run.table, run.column, p.output_type, list(work.udf.input_columns), work.commit_every,
                                  on_commit=lambda version, group: _committed(tracker, version, group))
            if not p.units:
                if not p.column_exists:
                    committer.ensure_column()  # an empty selection still yields the column
                    committed_version = run.table.open().version
                break
            ensure_ray(ray_address, num_cpus)
            ctx = TaskContext(run.table, p.read_version, run.column, p.column_exists, work.udf, run.key, run.run_id,
                              run.as_recorded)

            def on_result(r, committer=committer):
                counters.computed(r)
                tracker.emit()
                fold_inputs.computed(r)
                committer.add(r)

            run_units(p, ctx, concurrency=work.concurrency, on_result=on_result)
            committer.flush()
            committed_version = committer.version or committed_version
            fold_inputs.committed(committer)
            if not committer.stale:
                break
            # Rewritten under us: their rows are counted again when the next round plans them.
            log.warning("%d fragments were rewritten by another writer while computing; planning them again",
                        len(committer.stale))
            for r in committer.stale:
                counters.discarded(r)
        # The run is finished only once folded: until then its records say "unfinished run",
        # and a retry (same identity) is a resume that finds nothing left but the fold. So a
        # storage error here fails the job like any other; its retry computes nothing again.
        if counters.fragments_total or fold_inputs.needed:  # a no-op run over a folded state writes nothing
            fold(run.table, run.column, known=fold_inputs.known, orphans=fold_inputs.orphans, dataset=fold_inputs.newest,
                 carried=fold_inputs.carried, state_outdated=fold_inputs.state_outdated)
    except BackfillError as e:
        if counters.fragments_total:
            e.message += "; " + left_behind(counters, run.udf_version)
        raise
    finally:
        sink.close()
    c = counters
    return BackfillResult(committed_version=committed_version, read_version=read_version,
                          fragments_done=c.fragments_done, fragments_total=c.fragments_total, rows_done=c.rows_done,
                          rows_total=c.rows_total, rows_computed=c.rows_computed, udf_calls=c.udf_calls,
                          commits=c.commits, seconds=time.monotonic() - started, rows_discarded=c.rows_discarded)


def _committed(tracker: ProgressTracker, version: int, group: list[FragmentResult]) -> None:
    tracker.counters.committed(group)
    tracker.table_version = version
    tracker.emit()


def left_behind(c: RunCounters, udf_version: str) -> str:
    """What a run that failed after it started computing leaves in the table. Commits are
    whole groups of whole fragments, so it is exact per fragment: the committed ones hold this
    udf version in the rows the run selected, everything else what it held before."""
    if not c.fragments_committed:
        return (f"no fragment was committed (0 of {c.fragments_total}): the column holds what it held before the run; "
                "running the same spec again resumes from the fragments already computed")
    return (f"{c.fragments_committed} of {c.fragments_total} fragments ({c.rows_committed} of {c.rows_total} rows) "
            f"were committed: the rows this run selected in them hold udf.version {udf_version!r}, every other "
            "row what it held before the run (an earlier version's value, or null); running the same spec again "
            "resumes without computing the committed fragments again")


__all__ = ["BackfillResult", "run_backfill", "ensure_ray", "BackfillError"]
