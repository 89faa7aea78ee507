"""Planning: which rows of which fragments this run computes.

The plan pins the table version it reads: every task reads that version, so rows appended
or rewritten while the job runs are not part of it (they stay null until the next run, which
as mode Missing picks them up). Selection = rows matching `where`, minus deleted rows; mode
Missing further removes rows already computed by this udf version (from the checkpoints,
see checkpoint.py); mode All keeps them, except those done by an earlier attempt of this
same run (records carry the run's id), so a retried All run resumes too.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import lance
import numpy as np
import pyarrow as pa

from ..api.job_contract import BackfillWork
from ..api.models import Mode
from .checkpoint import NO_ROWS, Checkpoints, FragmentRecord, load_checkpoints, pack_mask
from .errors import SpecError
from .history import carry_over
from .table import ROW_OFFSET_MASK, TableLocation, column_ids, field_file, input_signature
from .types import to_pyarrow
from .run import run_identity  # noqa: F401 - planning's callers import it from here, as ever
from .udf import udf_key

@dataclass
class WorkUnit:
    fragment_id: int
    physical_rows: int
    rows: int  # rows this run computes in the fragment
    compute: Optional[bytes]  # packed mask of the rows to compute; None means every physical row
    base_file: Optional[str]  # the column's data file in the pinned version (None: all null)
    base_done: bytes  # packed mask: rows of base_file already computed by this udf version
    input_signature: str
    # The record of an output an earlier attempt computed and did not commit: only the commit is missing.
    uncommitted: Optional[FragmentRecord] = None


@dataclass
class Plan:
    location: TableLocation
    read_version: int
    key: str
    run_id: str
    output_type: pa.DataType
    column_exists: bool
    fragments_in_table: int
    units: list[WorkUnit] = field(default_factory=list)
    # Checkpoints carried over compactions (history.py): folded into the state after the run.
    carried: dict[int, FragmentRecord] = field(default_factory=dict)
    # The state names fragments that are gone: a fold drops them, so that no later run looks
    # for them in the table's history again (carry_over walks back only for vanished ones).
    state_outdated: bool = False

    @property
    def rows_total(self) -> int:
        return sum(u.rows for u in self.units)


def check_columns(spec: BackfillWork, ds: lance.LanceDataset) -> tuple[pa.DataType, bool]:
    """Input columns exist, the output column is new or of the declared type."""
    names = ds.schema.names
    for c in spec.udf.input_columns:
        if c not in names:
            raise SpecError("udf.inputColumns", f"column {c!r} is not in table {spec.table.name!r} (columns: {', '.join(names)})")
    out = to_pyarrow(spec.udf.output_type)
    if spec.column in spec.udf.input_columns:
        raise SpecError("column", f"output column {spec.column!r} is also an input column")
    if spec.column in names:
        existing = ds.schema.field(spec.column).type
        if existing != out:
            raise SpecError("column", f"column {spec.column!r} exists with type {existing}, but udf.outputType is {out}")
        return out, True
    return out, False


def check_where(spec: BackfillWork, ds: lance.LanceDataset) -> None:
    if not spec.where:
        return
    try:
        ds.scanner(columns=[], filter=spec.where, with_row_address=True, limit=1).to_table()
    except (ValueError, OSError) as e:
        raise SpecError("where", f"invalid filter {spec.where!r}: {str(e).splitlines()[0][:400]}") from None


def _selected(frag: lance.LanceFragment, where: Optional[str]) -> Optional[np.ndarray]:
    """Mask of selected rows, or None for 'every physical row' (the common, scan-free case)."""
    meta = frag.metadata
    if not where and meta.deletion_file is None:
        return None
    addrs = frag.to_table(columns=[], filter=where or None, with_row_address=True).column("_rowaddr")
    mask = np.zeros(meta.physical_rows, dtype=bool)
    mask[(addrs.to_numpy() & ROW_OFFSET_MASK).astype(np.int64)] = True
    return mask


def plan(spec: BackfillWork, loc: TableLocation, ds: lance.LanceDataset, *, run_id: str, parallelism: int = 16,
         checkpoints: Optional[Checkpoints] = None) -> Plan:
    output_type, exists = check_columns(spec, ds)
    check_where(spec, ds)
    key = udf_key(spec.udf, spec.column)
    out_ids = column_ids(ds.lance_schema, spec.column) if exists else None
    in_ids = [column_ids(ds.lance_schema, c) for c in spec.udf.input_columns]
    mode_all = Mode(spec.mode) == Mode.All
    ckpt = checkpoints if checkpoints is not None else load_checkpoints(loc, spec.column)
    records = ckpt.by_fragment
    carried = carry_over(loc, ds, [*ckpt.state.values(), *ckpt.records.values()], key=key, out_ids=out_ids,
                         in_ids=in_ids) if exists else {}

    def one(frag: lance.LanceFragment) -> Optional[WorkUnit]:
        meta = frag.metadata
        n = meta.physical_rows
        selected = _selected(frag, spec.where)
        current = field_file(meta, out_ids) if exists else None
        sig = input_signature(meta, in_ids)
        rec, entry, moved = records.get(frag.fragment_id), ckpt.state.get(frag.fragment_id), carried.get(frag.fragment_id)

        def valid(r: Optional[FragmentRecord]) -> bool:
            return r is not None and r.udf_key == key and r.input_signature == sig and r.physical_rows == n

        # The checkpoint describing the fragment's current file (a pending record is newer
        # than the folded state, but either tells the truth if it names the current file).
        committed = next((r for r in (rec, entry, moved) if valid(r) and current is not None and r.output_file == current), None)
        uncommitted = rec if valid(rec) and committed is None and rec.base_file == current else None
        # Rows of the current file computed by this udf version: carried into the new record.
        # (None stands for "no rows", the common case, kept free of per-row work.)
        base_done = uncommitted.base_done_mask() if uncommitted is not None else \
            committed.done_mask() if committed is not None else None
        # Rows this run need not compute: all of them in mode Missing; in mode All only those
        # an earlier attempt of this very run committed.
        if not mode_all:
            done = base_done
        else:
            done = committed.done_mask() if committed is not None and committed.run_id == run_id else None
        if selected is None and done is None:
            compute, rows = None, n
        else:
            compute = np.ones(n, dtype=bool) if selected is None else selected.copy()
            if done is not None:
                compute &= ~done
            rows = int(compute.sum())
            if rows == 0:
                return None
        if uncommitted is not None:  # computed, not committed: enough if it covers every row we need
            covered = uncommitted.done_mask()
            if covered.all() if compute is None else not (compute & ~covered).any():
                return WorkUnit(frag.fragment_id, n, rows, None, current, uncommitted.base_done, sig, uncommitted=uncommitted)
        return WorkUnit(frag.fragment_id, n, rows, None if rows == n else pack_mask(compute), current,
                        pack_mask(base_done) if base_done is not None else NO_ROWS, sig)

    frags = ds.get_fragments()
    # Threads only pay off when a fragment needs reading (a filter, deleted rows); the rest is
    # metadata already in memory, where a pool costs more than it saves.
    needs_io = bool(spec.where) or any(f.metadata.deletion_file is not None for f in frags)
    if len(frags) <= 4 or parallelism <= 1 or not needs_io:
        units = [one(f) for f in frags]
    else:
        with ThreadPoolExecutor(max(1, min(parallelism, len(frags)))) as pool:
            units = list(pool.map(one, frags))
    live = {f.fragment_id for f in frags}
    return Plan(loc, ds.version, key, run_id, output_type, exists, len(frags), [u for u in units if u is not None],
                carried, any(fid not in live for fid in ckpt.state))
