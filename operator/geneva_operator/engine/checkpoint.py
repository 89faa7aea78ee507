"""Per-fragment records: what was computed, by which udf version, into which data file.

One record per (column, fragment) at `<table>.lance/_geneva/<column>/<fragment id>.lance`
(a one-row Lance file, so it is read and written through Lance's own object store and works
wherever the table does: local, s3://, gs://). A task writes it right after writing the
fragment's new data file and before the driver commits that file, and it describes both
sides of the commit:

    base_file, base_done   the column's file the task started from, and the rows of it
                           already computed by this udf version
    output_file, done      the new file, and the rows computed in it (base_done | this run)

Whichever of the two files the table's manifest currently holds tells which side is true,
so the record can never disagree with the table, even if the driver dies between writing
it and committing: a record whose output_file is not (yet) in the table and whose base_file
still is, is a finished-but-uncommitted checkpoint, committed on resume without calling the
udf again. A record whose input_signature or udf key does not match is ignored, which is how
a new udf version or rewritten input data invalidates it. Records are tiny and stay after
success: they are the table's memory of which rows this udf version has computed (needed
for mode Missing, and a null output still counts as computed).
"""
from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import pyarrow as pa
from lance.file import LanceFileReader, LanceFileWriter

from .table import TableLocation

RECORD_DIR = "_geneva"
_SCHEMA = pa.schema([pa.field("meta", pa.string()), pa.field("base_done", pa.binary()), pa.field("done", pa.binary())])


def pack_mask(mask: np.ndarray) -> bytes:
    return zlib.compress(np.packbits(mask.astype(bool)).tobytes(), 1)


def unpack_mask(data: bytes, length: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8), count=length)
    return bits.astype(bool)


@dataclass
class FragmentRecord:
    fragment_id: int
    udf_key: str
    input_signature: str
    physical_rows: int
    base_file: Optional[str]
    output_file: str
    rows_computed: int
    base_done: bytes  # packed mask
    done: bytes  # packed mask
    run_id: str = ""

    def done_mask(self) -> np.ndarray:
        return unpack_mask(self.done, self.physical_rows)

    def base_done_mask(self) -> np.ndarray:
        return unpack_mask(self.base_done, self.physical_rows)


def record_path(loc: TableLocation, column: str, fragment_id: int) -> str:
    return loc.path(RECORD_DIR, column, f"{fragment_id}.lance")


def write_record(loc: TableLocation, column: str, rec: FragmentRecord) -> None:
    meta = {k: v for k, v in asdict(rec).items() if k not in ("base_done", "done")}
    table = pa.table({"meta": [json.dumps(meta)], "base_done": [rec.base_done], "done": [rec.done]}, schema=_SCHEMA)
    w = LanceFileWriter(record_path(loc, column, rec.fragment_id), _SCHEMA, storage_options=loc.storage_options or None)
    w.write_batch(table)
    w.close()


def read_record(loc: TableLocation, column: str, fragment_id: int) -> Optional[FragmentRecord]:
    """The record, or None when there is none or it is unreadable (a write cut short by a
    kill is just a missing record: the fragment is computed again)."""
    try:
        t = LanceFileReader(record_path(loc, column, fragment_id), storage_options=loc.storage_options or None).read_all().to_table()
        meta = json.loads(t.column("meta")[0].as_py())
        return FragmentRecord(**meta, base_done=t.column("base_done")[0].as_py(), done=t.column("done")[0].as_py())
    except (ValueError, OSError, KeyError, TypeError, IndexError):
        return None
