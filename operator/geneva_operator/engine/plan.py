"""Planning: which rows of which fragments this run computes.

The plan pins the table version it reads: every task reads that version, so rows appended
or rewritten while the job runs are not part of it (they stay null until the next run, which
as mode Missing picks them up). Selection = rows matching `where`, minus deleted rows; mode
Missing further removes rows already computed by this udf version (from the checkpoints,
see checkpoint.py); mode All keeps them, except those done by an earlier attempt of this
same run (records carry the run's id), so a retried All run resumes too.
"""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import lance
import numpy as np
import pyarrow as pa

from ..api.job_contract import BackfillWork
from ..api.models import Mode
from .checkpoint import NO_ROWS, PENDING, CheckpointStore, FragmentRecord, pack_mask
from .errors import SpecError
from .history import carry_over
from .table import ROW_OFFSET_MASK, TableLocation, column_ids, field_file, input_signature
from .types import to_pyarrow
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
    ready: Optional[FragmentRecord] = None  # computed by an earlier attempt, only the commit is missing


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


def run_identity(spec: BackfillWork, key: str) -> dict:
    """What makes two attempts the same run: a retry with this identity resumes the run."""
    return {"key": key, "where": spec.where or "", "mode": Mode(spec.mode).value}


@dataclass
class Checkpoints:
    """The column's checkpoints as read at one moment: the folded state and pending records."""

    state: dict[int, FragmentRecord]
    records: dict[str, FragmentRecord]  # pending file name -> record

    @property
    def by_fragment(self) -> dict[int, FragmentRecord]:
        return {r.fragment_id: r for r in self.records.values()}

    def resume_run_id(self, ident: dict) -> Optional[str]:
        """The id of an unfinished run with this identity, if one left records. Records are
        deleted when a run finishes, so records with our identity mean an attempt of our run
        died; its committed fragments count as done in mode All too."""
        ids = Counter(r.run_id for r in self.records.values() if r.run == ident and r.run_id)
        return ids.most_common(1)[0][0] if ids else None


def load_checkpoints(loc: TableLocation, column: str) -> Checkpoints:
    store = CheckpointStore(loc, column)
    return Checkpoints(store.read_state(), store.read_records(store.pending_names()))


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
        ready = rec if valid(rec) and committed is None and rec.base_file == current else None
        # Rows of the current file computed by this udf version: carried into the new record.
        # (None stands for "no rows", the common case, kept free of per-row work.)
        base_done = ready.base_done_mask() if ready is not None else committed.done_mask() if committed is not None else None
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
        if ready is not None:  # computed, not committed: enough if it covers every row we need
            ready_done = ready.done_mask()
            if ready_done.all() if compute is None else not (compute & ~ready_done).any():
                return WorkUnit(frag.fragment_id, n, rows, None, current, ready.base_done, sig, ready=ready)
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


def fold(loc: TableLocation, column: str, *, known: Optional[dict[str, FragmentRecord]] = None,
         orphans: list[str] = (), dataset: Optional[lance.LanceDataset] = None,
         carried: Optional[dict[int, FragmentRecord]] = None, state_outdated: bool = False) -> bool:
    """After success: fold the pending records (and the checkpoints the plans carried over
    compactions) into the compact state, then delete the records, then the orphan data files
    given (outputs of this run never committed). `known` are records already in memory
    (name -> record), not read again. Returns whether there was anything to fold.
    `dataset`: the table's newest version if the caller has it at hand. `state_outdated`: the
    state names fragments that are gone; rewrite it even with nothing else to fold.

    Order matters for a kill at any point: the state is written (one atomic object) before
    any record is deleted, and it only holds entries naming a fragment's current file, so
    old state + records, new state + records, or new state alone all plan the same work."""
    store = CheckpointStore(loc, column)
    names = store.pending_names()
    carried = carried or {}
    if not names and not carried and not state_outdated:
        return False
    known = known or {}
    records = {n: known[n] for n in names if n in known}
    records.update(store.read_records([n for n in names if n not in known]))
    state = store.read_state()
    ds = dataset if dataset is not None else loc.open()
    current: dict[int, Optional[str]] = {}
    if column in ds.schema.names:
        out_ids = column_ids(ds.lance_schema, column)
        current = {f.fragment_id: field_file(f.metadata, out_ids) for f in ds.get_fragments()}
    # Entries for fragments gone (compacted, deleted) or rewritten since are dropped: they
    # could never match again, since data file names are never reused.
    entries = {fid: e for fid, e in state.items() if e.output_file and current.get(fid) == e.output_file}
    for r in [*carried.values(), *records.values()]:
        if r.output_file and current.get(r.fragment_id) == r.output_file:
            entries[r.fragment_id] = r
    store.write_state(entries.values())
    # Every record listed, folded or not: one not naming its fragment's current file was
    # superseded or never committed, and is of no use from now on.
    store.map(store.delete, [f"{PENDING}/{n}" for n in names])
    # Only after the records naming them are gone, so no resume can pick one up.
    store.map(store.delete_table_file, [f"data/{name}" for name in orphans])
    return True
