"""Planning: which rows of which fragments this run computes.

The plan pins the table version it reads: every task reads that version, so rows appended
or rewritten while the job runs are not part of it (they stay null until the next run, which
as mode Missing picks them up). Selection = rows matching `where`, minus deleted rows; mode
Missing further removes rows already computed by this udf version (from the fragment
records, see checkpoint.py); mode All keeps them, except those done by an earlier attempt
of this same run (the run marker), so a retried All run resumes too.
"""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional

import lance
import numpy as np
import pyarrow as pa
from lance.file import LanceFileReader, LanceFileWriter

from ..api.models import BackfillSpec, Mode
from .checkpoint import RECORD_DIR, FragmentRecord, pack_mask, read_record
from .errors import SpecError
from .table import TableLocation, field_file, input_signature
from .types import to_pyarrow
from .udf import udf_key

ROW_OFFSET_MASK = 0xFFFFFFFF  # a row address is fragment_id << 32 | offset


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

    @property
    def rows_total(self) -> int:
        return sum(u.rows for u in self.units)


def _run_marker_path(loc: TableLocation, column: str) -> str:
    return loc.path(RECORD_DIR, column, "run.lance")


_RUN_SCHEMA = pa.schema([pa.field("meta", pa.string())])


def run_identity(spec: BackfillSpec, key: str) -> dict:
    return {"key": key, "where": spec.where or "", "mode": Mode(spec.mode).value}


def read_run_marker(loc: TableLocation, column: str) -> Optional[dict]:
    try:
        t = LanceFileReader(_run_marker_path(loc, column), storage_options=loc.storage_options or None).read_all().to_table()
        return json.loads(t.column("meta")[0].as_py())
    except (ValueError, OSError, IndexError):
        return None


def write_run_marker(loc: TableLocation, column: str, meta: dict) -> None:
    w = LanceFileWriter(_run_marker_path(loc, column), _RUN_SCHEMA, storage_options=loc.storage_options or None)
    w.write_batch(pa.table({"meta": [json.dumps(meta)]}, schema=_RUN_SCHEMA))
    w.close()


def finish_run(loc: TableLocation, column: str, run_id: str) -> None:
    write_run_marker(loc, column, {"runId": run_id, "finished": True})


def check_columns(spec: BackfillSpec, ds: lance.LanceDataset) -> tuple[pa.DataType, bool]:
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


def check_where(spec: BackfillSpec, ds: lance.LanceDataset) -> None:
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


def plan(spec: BackfillSpec, loc: TableLocation, ds: lance.LanceDataset, *, run_id: str, parallelism: int = 16) -> Plan:
    output_type, exists = check_columns(spec, ds)
    check_where(spec, ds)
    key = udf_key(spec.udf, spec.column)
    out_id = ds.lance_schema.field(spec.column).id() if exists else None
    in_ids = [ds.lance_schema.field(c).id() for c in spec.udf.input_columns]
    mode_all = Mode(spec.mode) == Mode.All

    def one(frag: lance.LanceFragment) -> Optional[WorkUnit]:
        meta = frag.metadata
        n = meta.physical_rows
        selected = _selected(frag, spec.where)
        current = field_file(meta, out_id) if exists else None
        sig = input_signature(meta, in_ids)
        rec = read_record(loc, spec.column, frag.fragment_id)
        valid = rec is not None and rec.udf_key == key and rec.input_signature == sig and rec.physical_rows == n
        committed = valid and current is not None and rec.output_file == current
        ready = rec if valid and not committed and rec.base_file == current else None
        # Rows of the current file computed by this udf version: carried into the new record.
        if committed:
            base_done = rec.done_mask()
        elif ready is not None:
            base_done = ready.base_done_mask()
        else:
            base_done = np.zeros(n, dtype=bool)
        # Rows this run need not compute: all of them in mode Missing; in mode All only those
        # an earlier attempt of this very run committed.
        done = base_done if not mode_all else (rec.done_mask() if committed and rec.run_id == run_id else np.zeros(n, dtype=bool))
        want = np.ones(n, dtype=bool) if selected is None else selected
        compute = want & ~done
        rows = int(compute.sum())
        if rows == 0:
            return None
        if ready is not None and not (compute & ~ready.done_mask()).any():
            return WorkUnit(frag.fragment_id, n, rows, None, current, ready.base_done, sig, ready=ready)
        all_rows = rows == n
        return WorkUnit(frag.fragment_id, n, rows, None if all_rows else pack_mask(compute), current, pack_mask(base_done), sig)

    frags = ds.get_fragments()
    with ThreadPoolExecutor(max(1, min(parallelism, len(frags)))) as pool:
        units = [u for u in pool.map(one, frags) if u is not None]
    return Plan(loc, ds.version, key, run_id, output_type, exists, len(frags), units)
