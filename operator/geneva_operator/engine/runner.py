"""run_backfill: the engine's public entry point, shared by the CLI, the Ray job and benchmarks."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Optional, Union

from ..api.job_contract import BackfillWork, ResultReport, work_from_spec
from ..api.models import BackfillSpec
from .checkpoint import record_name
from .commit import Committer
from .errors import BackfillError
from .execute import TaskContext, run_units
from .manifest import parse_spec
from .plan import Plan, fold, load_checkpoints, plan, run_identity
from .progress import NullProgress, ProgressSink, ProgressTracker
from .table import TableLocation
from .udf import check_target, udf_key

log = logging.getLogger(__name__)

MAX_ROUNDS = 3  # plan again when concurrent writers rewrote fragments we computed


@dataclass
class BackfillResult:
    """What a run did. The totals count this run's work, not the table: rows_total is the rows
    it planned to write (selected, not done yet), fragments_total the fragments they are in.
    When another writer rewrites a fragment under the run (a compaction) before its commit,
    its rows are planned again from the new fragments: the totals become what is done plus
    what the new plan holds, so done never exceeds total."""

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
    spec = _coerce_spec(spec)
    sink = progress or NullProgress()
    loc = TableLocation.from_ref(spec.table)
    key = udf_key(spec.udf, spec.column)
    ident = run_identity(spec, key)
    ds = loc.open()  # first: a missing or unreachable table is reported as such
    if not (ray_address or os.environ.get("RAY_ADDRESS")):
        # The workers of a local Ray import the udf from this very environment: an import
        # error is theirs too, and found here costs no Ray start (10-30 s). A cluster's
        # workers may have modules this process lacks (image, runtimeEnv): left to them.
        check_target(spec.udf)
    checkpoints = load_checkpoints(loc, spec.column)
    # Records left by a dead attempt of this same run: adopt its id (see Checkpoints.resume_run_id).
    run_id = checkpoints.resume_run_id(ident) or os.urandom(12).hex()
    leftovers = bool(checkpoints.records)
    # Records in memory, newest last: the fold then needs not read them back from storage.
    known = dict(checkpoints.records)

    totals = dict(fragments_done=0, fragments_total=0, rows_done=0, rows_total=0, rows_computed=0, udf_calls=0, commits=0,
                  rows_discarded=0)
    read_version = None
    committed_version = None
    tracker: Optional[ProgressTracker] = None
    orphans: list[str] = []  # outputs of this attempt that were never committed
    newest = None  # the version our last commit made, as a dataset
    carried: dict = {}  # checkpoints the plans carried over compactions, for the fold
    state_outdated = False
    try:
        for round_no in range(MAX_ROUNDS):
            ds = ds if round_no == 0 else loc.open()
            # Round 0 plans from the checkpoints read above; later rounds read them again (this
            # run's records now say which fragments it committed).
            p: Plan = plan(spec, loc, ds, run_id=run_id, checkpoints=checkpoints if round_no == 0 else None)
            read_version = read_version if read_version is not None else p.read_version
            carried.update(p.carried)
            state_outdated |= p.state_outdated
            committed_version = committed_version or p.read_version
            # What is done so far plus what this plan still has (see BackfillResult).
            totals["fragments_total"] = totals["fragments_done"] + len(p.units)
            totals["rows_total"] = totals["rows_done"] + p.rows_total
            if round_no == 0:
                tracker = ProgressTracker(sink, len(p.units), p.rows_total, spec.udf.version)
            tracker.totals(totals["fragments_total"], totals["rows_total"])
            committer = Committer(loc, spec.column, p.output_type, list(spec.udf.input_columns), spec.commit_every,
                                  on_commit=lambda v, group: tracker.committed(v, group))
            if not p.units:
                if not p.column_exists:
                    committer.ensure_column()  # an empty selection still yields the column
                    committed_version = loc.open().version
                break
            ensure_ray(ray_address, num_cpus)
            ctx = TaskContext(loc, p.read_version, spec.column, p.column_exists, spec.udf, p.key, run_id, ident)

            def on_result(r, committer=committer):
                totals["fragments_done"] += 1
                totals["rows_done"] += r.rows
                totals["rows_computed"] += r.rows_computed
                totals["udf_calls"] += r.udf_calls
                tracker.fragment_done(r.rows)
                if r.record is not None:
                    known[record_name(r.fragment_id)] = r.record
                committer.add(r)

            run_units(p, ctx, concurrency=spec.concurrency, on_result=on_result)
            committer.flush()
            totals["commits"] += committer.commits
            committed_version = committer.version or committed_version
            newest = committer.dataset or newest
            # A stale result's file was never committed, by us or anyone: its record is the only
            # way to it, and a record can only become committable again if the fragment got back
            # the exact files it was computed from, which never happens (file names are unique).
            orphans += [r.output_file for r in committer.stale]
            if not committer.stale:
                break
            # Rewritten under us: their rows are counted again when the next round plans them.
            log.warning("%d fragments were rewritten by another writer while computing; planning them again",
                        len(committer.stale))
            for r in committer.stale:
                totals["fragments_done"] -= 1
                totals["rows_done"] -= r.rows
                totals["rows_discarded"] += r.rows_computed
                tracker.fragment_undone(r.rows)
        # The run is finished only once folded: until then its records say "unfinished run",
        # and a retry (same identity) is a resume that finds nothing left but the fold. So a
        # storage error here fails the job like any other; its retry computes nothing again.
        if totals["fragments_total"] or leftovers or carried or state_outdated:  # a no-op run over a folded state writes nothing
            fold(loc, spec.column, known=known, orphans=orphans, dataset=newest, carried=carried,
                 state_outdated=state_outdated)
    except BackfillError as e:
        if tracker is not None and tracker.fragments_total:
            e.message += "; " + left_behind(tracker)
        raise
    finally:
        sink.close()
    return BackfillResult(committed_version=committed_version, read_version=read_version,
                          seconds=time.monotonic() - started, **totals)


def left_behind(t: ProgressTracker) -> str:
    """What a run that failed after it started computing leaves in the table. Commits are
    whole groups of whole fragments, so it is exact per fragment: the committed ones hold this
    udf version in the rows the run selected, everything else what it held before."""
    if not t.fragments_committed:
        return (f"no fragment was committed (0 of {t.fragments_total}): the column holds what it held before the run; "
                "running the same spec again resumes from the fragments already computed")
    return (f"{t.fragments_committed} of {t.fragments_total} fragments ({t.rows_committed} of {t.rows_total} rows) "
            f"were committed: the rows this run selected in them hold udf.version {t.udf_version!r}, every other "
            "row what it held before the run (an earlier version's value, or null); running the same spec again "
            "resumes without computing the committed fragments again")


__all__ = ["BackfillResult", "run_backfill", "ensure_ray", "BackfillError"]
