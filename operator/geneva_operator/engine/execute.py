"""The work of one fragment, the Ray tasks that do it a few fragments at a time, and the
loop that keeps tasks in flight.

For each of its fragments a task reads the fragment straight from storage at the pinned
version, calls the udf, writes one new data file holding the whole column for the fragment
(rows it did not compute keep their old values), writes the fragment record, and reports a
few numbers: no column data ever travels through the driver.

The unit of work is a whole fragment, never a row range of one: a DataReplacement commit
takes exactly one data file per fragment holding the whole column, so the outputs of split
ranges would have to travel (through Ray's object store, across nodes) to one task that
stitches and writes them, and resume would still be per fragment. That only pays when a
table has fewer fragments than workers and a slow udf; Lance caps fragments at 1M rows by
default, so it is left out for now.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import lance
import numpy as np
import pyarrow as pa
from lance.file import LanceFileWriter

from ..api.models import Udf
from .checkpoint import CheckpointStore, FragmentRecord, pack_mask, unpack_mask
from .errors import BackfillError, StorageError, UdfError
from .plan import ROW_OFFSET_MASK, Plan, WorkUnit
from .sizing import TaskSizer
from .table import TableLocation
from .types import to_pyarrow
from .udf import UdfRunner


@dataclass(frozen=True)
class TaskContext:
    location: TableLocation
    read_version: int
    column: str
    column_exists: bool
    udf: Udf
    key: str
    run_id: str
    run: dict  # the run's identity (key, where, mode), stored in each record so a retry can adopt run_id


@dataclass
class FragmentResult:
    fragment_id: int
    output_file: str  # relative to the dataset's data/ directory
    rows: int  # rows of the plan this covers
    rows_computed: int  # rows the udf actually saw (0 for a resumed checkpoint)
    udf_calls: int
    base_file: Optional[str]
    input_signature: str
    seconds: float = 0.0  # the fragment's own work in the worker (read, udf, write, record): sizes tasks
    record: Optional[FragmentRecord] = None  # the checkpoint written for it (the driver folds it after success)
    file_size: Optional[int] = None  # bytes of output_file, when this run wrote it (lets the commit skip reading it)


_DATASETS: dict[tuple[str, int, str], lance.LanceDataset] = {}


def _dataset(ctx: TaskContext) -> lance.LanceDataset:
    # Opening a dataset reads its manifest; the tasks of one run that a worker executes share
    # the pinned version. Keyed by run too: a table dropped and created again at the same
    # uri starts its versions over, and a worker can outlive a run (a driver running several).
    key = (ctx.location.uri, ctx.read_version, ctx.run_id)
    ds = _DATASETS.get(key)
    if ds is None:
        if len(_DATASETS) > 4:
            _DATASETS.clear()
        ds = _DATASETS[key] = ctx.location.open(ctx.read_version)
    return ds


# Rows read from storage per read: batch_size x READ_BATCHES. One read per fragment in the
# common case (batch 4096 -> 65536 rows), while a fragment of large inputs (images, batch 32)
# is still read a bounded number of rows at a time instead of whole.
READ_BATCHES = 16


def _udf_batches(chunks: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Zero-copy slices of exactly `size` rows (the last may be short) of read chunks of any
    size; only a remainder carried over a chunk boundary is copied, once."""
    carry: Optional[pa.RecordBatch] = None
    for b in chunks:
        if b.num_rows == 0:
            continue
        if carry is not None:
            b, carry = pa.concat_batches([carry, b]), None
        n = b.num_rows
        whole = n - n % size
        for off in range(0, whole, size):
            yield b.slice(off, size)
        if whole < n:
            carry = b.slice(whole)
    if carry is not None:
        yield carry


def _concat(outs: list[pa.Array]) -> pa.Array:
    return pa.concat_arrays(outs) if len(outs) != 1 else outs[0]


def compute_fragment(ctx: TaskContext, unit: WorkUnit) -> FragmentResult:
    ds = _dataset(ctx)
    runner = UdfRunner(ctx.udf)
    # The fragment's own work from here: not the dataset's open nor the udf's setup, paid
    # once per worker, which would make the rate that sizes tasks (sizing.py) look slower.
    started = time.monotonic()
    frag = ds.get_fragment(unit.fragment_id)
    inputs = list(ctx.udf.input_columns)
    size = ctx.udf.batch_size
    read_rows = size * READ_BATCHES
    n = unit.physical_rows
    out_type = to_pyarrow(ctx.udf.output_type)

    if unit.compute is None:
        # Every physical row, no deletions: outputs in file order are the whole column.
        chunks = frag.to_batches(columns=inputs, batch_size=read_rows)
        outs = [runner(b) for b in _udf_batches(chunks, size)]
        full = _concat(outs) if outs else pa.array([], out_type)
        computed = np.ones(n, dtype=bool)
    else:
        computed = unpack_mask(unit.compute, n)
        read_cols = inputs + ([ctx.column] if ctx.column_exists and unit.base_file else [])
        old_parts, old_offsets, new_offsets = [], [], []

        def selected() -> Iterator[pa.RecordBatch]:
            for b in frag.to_batches(columns=read_cols, batch_size=read_rows, with_row_address=True):
                offs = (b.column("_rowaddr").to_numpy() & ROW_OFFSET_MASK).astype(np.int64)
                if len(read_cols) > len(inputs):
                    old_parts.append(b.column(ctx.column))
                    old_offsets.append(offs)
                keep = computed[offs]
                if keep.any():
                    new_offsets.append(offs[keep])
                    yield b.select(inputs).filter(pa.array(keep))

        outs = [runner(b) for b in _udf_batches(selected(), size)]
        old = _concat(old_parts) if old_parts else pa.array([], out_type)
        new = _concat(outs) if outs else pa.array([], out_type)
        # One gather builds the column: old values where we did not compute, new ones where
        # we did, null for deleted rows (invisible anyway) and for a column with no data yet.
        idx = np.full(n, -1, dtype=np.int64)
        if old_offsets:
            idx[np.concatenate(old_offsets)] = np.arange(len(old), dtype=np.int64)
        if new_offsets:
            idx[np.concatenate(new_offsets)] = len(old) + np.arange(len(new), dtype=np.int64)
        full = pa.concat_arrays([old, new]).take(pa.array(idx, mask=idx < 0))

    if len(full) != n:  # a broken invariant of ours, not the user's
        raise BackfillError(None, f"fragment {unit.fragment_id}: built {len(full)} values for {n} rows")
    name = f"{uuid.uuid4().hex}.lance"
    schema = pa.schema([pa.field(ctx.column, out_type, nullable=True)])
    try:
        writer = LanceFileWriter(ctx.location.path("data", name), schema, version=ds.data_storage_version,
                                 storage_options=ctx.location.storage_options or None)
        writer.write_batch(pa.table([full], schema=schema))
        writer.close()
    except OSError as e:  # the store refused the write: say so, not "the udf failed"
        raise StorageError("table.uri", f"{ctx.location.uri}: writing the data file of fragment {unit.fragment_id} "
                                        f"failed: {_first_line(e)}") from None
    file_size = writer.size_bytes  # set by close()

    # After the data file is complete (its upload finished), never before: a record always
    # names a whole file, so a resumed run may commit it without looking.
    base_done = unpack_mask(unit.base_done, n)
    rec = FragmentRecord(
        fragment_id=unit.fragment_id, udf_key=ctx.key, input_signature=unit.input_signature, physical_rows=n,
        base_file=unit.base_file, output_file=name, base_done=unit.base_done,
        done=pack_mask(base_done | computed), run_id=ctx.run_id, run=ctx.run,
    )
    CheckpointStore(ctx.location, ctx.column).write_record(rec)
    return FragmentResult(unit.fragment_id, name, unit.rows, unit.rows, runner.calls, unit.base_file,
                          unit.input_signature, time.monotonic() - started, rec, file_size)


def resumed_result(unit: WorkUnit) -> FragmentResult:
    rec = unit.uncommitted
    return FragmentResult(unit.fragment_id, rec.output_file, unit.rows, 0, 0, unit.base_file, unit.input_signature,
                          record=rec)


def _memory_bytes(quantity: Optional[str]) -> Optional[int]:
    if not quantity:
        return None
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * mult)
    return int(float(quantity))


# A task reports its finished fragments at most this often (and when it ends): when
# fragments take longer, each is reported as it finishes; when they take milliseconds, one
# report carries many, since every report costs the worker and the driver about a
# millisecond of CPU, as much as a small fragment's work.
REPORT_EVERY = 0.5  # seconds


def compute_fragments(ctx: TaskContext, units: list[WorkUnit], report_every: float = REPORT_EVERY) -> Iterator[list[FragmentResult]]:
    """One Ray task's work: its fragments one after another, streamed to the driver in
    reports (lists of results), so progress, commits and resume stay per fragment while the
    task's fixed cost is paid once for the lot."""
    done: list[FragmentResult] = []
    last = time.monotonic()
    for unit in units:
        try:
            done.append(compute_fragment(ctx, unit))
        except Exception:
            if done:  # what was finished before the failure still reaches the committer
                yield done
            raise
        if time.monotonic() - last >= report_every:
            yield done
            done, last = [], time.monotonic()
    if done:
        yield done


# Tasks queued per slot when spec.concurrency is not set: a worker that finishes finds its
# next task already waiting in Ray's queue instead of idling for the driver's round trip.
QUEUE_PER_SLOT = 2

# Attempts of a task whose worker died (OOM, node loss, a crash in native code), counting
# the first. An exception raised by the udf is not retried: it would fail the same way again.
TASK_ATTEMPTS = 4


_REMOTE: dict = {}


def _remote_fn():
    """One Ray remote function per process: ray.remote() of a new wrapper on every run would
    pickle and export the function to the cluster again each time (tens of ms per run)."""
    import ray

    fn = _REMOTE.get("compute")
    if fn is None:
        fn = _REMOTE["compute"] = ray.remote(num_returns="streaming")(compute_fragments)
    return fn


def _slots(res, concurrency: Optional[int]) -> int:
    """How many tasks run at once: spec.concurrency, or as many as the cluster fits."""
    import ray

    if concurrency is not None:
        return concurrency
    cres = ray.cluster_resources()
    slots = [cres.get("CPU", 1.0) / res.cpu] if res.cpu else []
    if res.gpu:
        slots.append(cres.get("GPU", 0.0) / res.gpu)
    return max(1, int(min(slots)) if slots else int(cres.get("CPU", 1.0)))


@dataclass
class _Task:
    units: dict[int, WorkUnit]  # fragment id -> unit, for those not reported yet
    attempt: int = 1


def run_units(plan: Plan, ctx: TaskContext, *, concurrency: Optional[int], on_result: Callable[[FragmentResult], None]) -> None:
    """Run the plan's units as Ray tasks, each sized when it is submitted (sizing.py), and
    hand each fragment's result to `on_result` (the committer) as it arrives. With
    spec.concurrency at most that many tasks are in flight (so at most that many run at
    once); without it, QUEUE_PER_SLOT x what the cluster fits, so Ray starts the next task
    the moment a worker is free."""
    import ray

    res = ctx.udf.resources
    # Ray does not retry these tasks: a retry replays a generator from its first fragment and
    # fails unless it reports exactly as often as the first attempt did, which a report every
    # REPORT_EVERY seconds does not. The driver runs the fragments not reported yet again.
    remote = _remote_fn().options(num_cpus=res.cpu, num_gpus=res.gpu or None, memory=_memory_bytes(res.memory),
                                  max_retries=0)
    for unit in plan.units:
        if unit.uncommitted is not None:
            on_result(resumed_result(unit))
    slots = _slots(res, concurrency)
    in_flight_max = concurrency if concurrency is not None else QUEUE_PER_SLOT * slots
    sizer = TaskSizer([u for u in plan.units if u.uncommitted is None], slots)
    retries: list[_Task] = []  # the unreported fragments of tasks whose worker died, sent again first
    in_flight: dict = {}  # generator -> _Task
    # No ray.cancel of the tasks still in flight: cancelling a task that Ray is retrying
    # after a worker died aborted the whole driver in Ray 2.60 ("Check failed: Tried to
    # complete task that was not pending", task_manager.cc), seen in CI. Their outputs are
    # never committed (a later run adopts or discards them by their records), and Ray ends
    # them when the job's driver exits.
    while sizer or retries or in_flight:
        # Until a fragment is measured, no task waits in Ray's queue: one sized blind could
        # be the straggler. A slot then idles for one round trip to the driver, once.
        room = in_flight_max if sizer.seconds_per_row is not None else min(in_flight_max, slots)
        while (sizer or retries) and len(in_flight) < room:
            task = retries.pop() if retries else _Task({u.fragment_id: u for u in sizer.next_task()})
            in_flight[remote.remote(ctx, list(task.units.values()))] = task
        reporting, _ = ray.wait(list(in_flight), num_returns=1)
        for gen in reporting:
            task = in_flight[gen]
            try:
                results = ray.get(next(gen))
            except StopIteration:
                del in_flight[gen]
                if task.units:  # a broken invariant of ours: every unit is reported or fails
                    raise BackfillError(None, f"a task ended without reporting fragments {sorted(task.units)}") from None
                continue
            except ray.exceptions.RayTaskError as e:  # raised by our code or the udf's
                if isinstance(e.cause, BackfillError):
                    raise e.cause from None
                raise UdfError("udf.function", f"the task for fragment {min(task.units)} failed: {_last_line(e)}") from None
            except ray.exceptions.RayError as e:  # the worker died: its unreported fragments go again
                del in_flight[gen]
                if task.attempt >= TASK_ATTEMPTS:
                    raise UdfError("udf.function", f"the task for fragments {sorted(task.units)} failed "
                                                   f"{task.attempt} times: {_last_line(e)}") from None
                retries.append(_Task(task.units, task.attempt + 1))
                continue
            for r in results:
                del task.units[r.fragment_id]
                sizer.observe(r.rows_computed, r.seconds)
                on_result(r)


def _first_line(e: Exception) -> str:
    # Lance's IO errors put the store's answer on the first line and a source location last.
    text = str(e).strip()
    return text.splitlines()[0][:1000] if text else type(e).__name__


def _last_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[-1][:1000] if text else type(e).__name__
