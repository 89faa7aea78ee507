"""The work of one fragment (a Ray task) and the loop that keeps tasks in flight.

A task reads its fragment straight from storage at the pinned version, calls the udf,
writes one new data file holding the whole column for the fragment (rows it did not compute
keep their old values), writes the fragment record, and returns a few numbers: no column
data ever travels through the driver.
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
from .checkpoint import FragmentRecord, pack_mask, unpack_mask, write_record
from .errors import BackfillError, UdfError
from .plan import ROW_OFFSET_MASK, Plan, WorkUnit
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


@dataclass
class FragmentResult:
    fragment_id: int
    output_file: str  # relative to the dataset's data/ directory
    rows: int  # rows of the plan this covers
    rows_computed: int  # rows the udf actually saw (0 for a resumed checkpoint)
    udf_calls: int
    base_file: Optional[str]
    input_signature: str
    seconds: float = 0.0


_DATASETS: dict[tuple[str, int], lance.LanceDataset] = {}


def _dataset(loc: TableLocation, version: int) -> lance.LanceDataset:
    # Opening a dataset reads its manifest; tasks of one run share the pinned version.
    key = (loc.uri, version)
    ds = _DATASETS.get(key)
    if ds is None:
        if len(_DATASETS) > 4:
            _DATASETS.clear()
        ds = _DATASETS[key] = loc.open(version)
    return ds


def _rebatch(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly `size` rows (the last may be short) from filtered, uneven ones."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for b in batches:
        if b.num_rows == 0:
            continue
        pending.append(b)
        count += b.num_rows
        while count >= size:
            t = pa.Table.from_batches(pending).combine_chunks()
            yield t.slice(0, size).to_batches()[0]
            rest = t.slice(size)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(pending).combine_chunks().to_batches()[0]


def compute_fragment(ctx: TaskContext, unit: WorkUnit) -> FragmentResult:
    started = time.monotonic()
    ds = _dataset(ctx.location, ctx.read_version)
    frag = ds.get_fragment(unit.fragment_id)
    runner = UdfRunner(ctx.udf)
    inputs = list(ctx.udf.input_columns)
    size = ctx.udf.batch_size
    n = unit.physical_rows
    out_type = to_pyarrow(ctx.udf.output_type)

    if unit.compute is None:
        # Every physical row, no deletions: outputs in file order are the whole column.
        outs = [runner(b) for b in frag.to_batches(columns=inputs, batch_size=size) if b.num_rows]
        full = pa.concat_arrays(outs) if outs else pa.array([], out_type)
        computed = np.ones(n, dtype=bool)
    else:
        computed = unpack_mask(unit.compute, n)
        read_cols = inputs + ([ctx.column] if ctx.column_exists and unit.base_file else [])
        old_parts, old_offsets, new_offsets = [], [], []

        def selected() -> Iterator[pa.RecordBatch]:
            for b in frag.to_batches(columns=read_cols, batch_size=max(size, 8192), with_row_address=True):
                offs = (b.column("_rowaddr").to_numpy() & ROW_OFFSET_MASK).astype(np.int64)
                if len(read_cols) > len(inputs):
                    old_parts.append(b.column(ctx.column))
                    old_offsets.append(offs)
                keep = computed[offs]
                if keep.any():
                    new_offsets.append(offs[keep])
                    yield b.select(inputs).filter(pa.array(keep))

        outs = [runner(b) for b in _rebatch(selected(), size)]
        old = pa.concat_arrays(old_parts) if old_parts else pa.array([], out_type)
        new = pa.concat_arrays(outs) if outs else pa.array([], out_type)
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
    writer = LanceFileWriter(ctx.location.path("data", name), schema, version=ds.data_storage_version,
                             storage_options=ctx.location.storage_options or None)
    writer.write_batch(pa.table([full], schema=schema))
    writer.close()

    base_done = unpack_mask(unit.base_done, n)
    write_record(ctx.location, ctx.column, FragmentRecord(
        fragment_id=unit.fragment_id, udf_key=ctx.key, input_signature=unit.input_signature, physical_rows=n,
        base_file=unit.base_file, output_file=name, rows_computed=unit.rows, base_done=unit.base_done,
        done=pack_mask(base_done | computed), run_id=ctx.run_id,
    ))
    return FragmentResult(unit.fragment_id, name, unit.rows, unit.rows, runner.calls, unit.base_file,
                          unit.input_signature, time.monotonic() - started)


def resumed_result(unit: WorkUnit) -> FragmentResult:
    rec = unit.ready
    return FragmentResult(unit.fragment_id, rec.output_file, unit.rows, 0, 0, unit.base_file, unit.input_signature)


def _memory_bytes(quantity: Optional[str]) -> Optional[int]:
    if not quantity:
        return None
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, mult in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * mult)
    return int(float(quantity))


def run_units(plan: Plan, ctx: TaskContext, *, concurrency: Optional[int], on_result: Callable[[FragmentResult], None]) -> None:
    """Run the plan's units as Ray tasks, at most `concurrency` in flight, and hand each
    result to `on_result` (the committer) as it arrives, in completion order."""
    import ray

    res = ctx.udf.resources
    remote = ray.remote(compute_fragment).options(
        num_cpus=res.cpu, num_gpus=res.gpu or None, memory=_memory_bytes(res.memory),
        # A dead worker (OOM, node loss, a crash in native code) is retried by Ray; an
        # exception raised by the udf is not: it would fail the same way again.
        max_retries=3, retry_exceptions=False,
    )
    if concurrency is None:
        cpus = ray.cluster_resources().get("CPU", 1.0)
        concurrency = max(1, int(cpus // res.cpu) if res.cpu else int(cpus))
    for unit in plan.units:
        if unit.ready is not None:
            on_result(resumed_result(unit))
    todo = [u for u in plan.units if u.ready is None]
    ctx_ref = ray.put(ctx)
    in_flight: dict = {}
    try:
        while todo or in_flight:
            while todo and len(in_flight) < concurrency:
                u = todo.pop(0)
                in_flight[remote.remote(ctx_ref, u)] = u
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                unit = in_flight.pop(ref)
                try:
                    on_result(ray.get(ref))
                except ray.exceptions.RayError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, BackfillError):
                        raise cause from None
                    last = str(e).strip().splitlines()[-1][:1000] if str(e).strip() else type(e).__name__
                    raise UdfError("udf.function", f"the task for fragment {unit.fragment_id} failed: {last}") from None
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=False)
