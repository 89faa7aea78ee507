"""Checkpoints: what was computed, by which udf version, into which data file.

Everything lives next to the table, under `<table>.lance/_geneva/<column>/`:

    pending/<fragment id>.json   one record per fragment computed by a run that has not
                                 finished yet (written by the task, right after the data file)
    state.arrow                  the compact state: one entry per fragment whose current data
                                 file this engine wrote, folded from the records after success

A record describes both sides of the commit of one fragment:

    base_file, base_done   the column's file the task started from, and the rows of it
                           already computed by this udf version
    output_file, done      the new file, and the rows computed in it (base_done | this run)

Whichever of the two files the table's manifest currently holds tells which side is true,
so a record can never disagree with the table, even if the driver dies between writing it
and committing: a record whose output_file is not (yet) in the table and whose base_file
still is, is a finished-but-uncommitted checkpoint, committed on resume without calling the
udf again. A record or entry whose input_signature or udf key does not match is ignored,
which is how a new udf version or rewritten input data invalidates it. A record also carries
its run's identity, so a retry of an unfinished run adopts the run's id (mode All needs it
to tell rows this run already did from rows an earlier run did).

After success the records are folded into state.arrow (one small object written in one PUT,
or written and renamed on a local disk: never half-written) and then deleted. The state only
keeps entries whose output_file is the fragment's current file, so it too is checked against
the table on every use: it is a cache of "which rows has this udf version computed" (mode
Missing needs it, since a null output still counts as computed); losing it costs
recomputation, never a wrong column. A fold cut short by a kill leaves the state (old or new)
plus records that are still consistent with the table: the next run plans from both and
folds again. A compaction replaces fragments and files while keeping rows and values: the
checkpoints of the fragments it rewrote are carried to the new ones through its transaction
(history.py) and folded like records.

Orphan data files. After success the driver deletes the outputs it knows were never
committed: those it left out because another writer rewrote their fragment meanwhile (their
record goes first, so nothing can resume from them). Other leftovers (the output of a task
killed mid-write or before its record, the first output of a task Ray retried, outputs of an
earlier attempt whose records no longer match) cannot be told apart from files that an older
table version still references without reading every manifest, and deleting one of those
would break time travel and readers pinned to it; they are left to Lance's
`cleanup_old_versions`, which removes unreferenced files past its age threshold.

Small objects go through plain file I/O on a local disk and through Lance's own object store
(LanceFileSession) on s3:// / gs:// / az://, so they reach exactly where the table does, with
the same storage options and credentials.
"""
from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import numpy as np
import pyarrow as pa

from .errors import StorageError
from .table import TableLocation

RECORD_DIR = "_geneva"
PENDING = "pending"
STATE = "state.arrow"
MAX_THREADS = 16  # concurrent requests to an object store
COMPRESS_STATE_FROM = 1024  # entries


NO_ROWS = b""  # the packed mask of no rows at all, the most common one, for free


def pack_mask(mask: np.ndarray) -> bytes:
    if not mask.any():
        return NO_ROWS
    return zlib.compress(np.packbits(mask.astype(bool)).tobytes(), 1)


def unpack_mask(data: bytes, length: int) -> np.ndarray:
    if not data:
        return np.zeros(length, dtype=bool)
    bits = np.unpackbits(np.frombuffer(zlib.decompress(data), dtype=np.uint8), count=length)
    return bits.astype(bool)


@dataclass
class FragmentRecord:
    """One fragment computed by a run (pending/<id>.json), or a folded state entry (then
    base_file/base_done are not kept: only the committed side matters once folded)."""

    fragment_id: int
    udf_key: str
    input_signature: str
    physical_rows: int
    base_file: Optional[str]
    output_file: str
    base_done: bytes  # packed mask
    done: bytes  # packed mask
    run_id: str = ""
    run: Optional[dict] = None  # identity of the run (key, where, mode) that wrote it; None for state entries

    def done_mask(self) -> np.ndarray:
        return unpack_mask(self.done, self.physical_rows)

    def base_done_mask(self) -> np.ndarray:
        return unpack_mask(self.base_done, self.physical_rows)

    def to_json(self) -> bytes:
        d = asdict(self)
        d["base_done"] = base64.b64encode(self.base_done).decode()
        d["done"] = base64.b64encode(self.done).decode()
        return json.dumps(d, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "FragmentRecord":
        d = json.loads(data)
        d["base_done"] = base64.b64decode(d["base_done"])
        d["done"] = base64.b64decode(d["done"])
        return cls(**d)


_STATE_SCHEMA = pa.schema([
    pa.field("fragment_id", pa.int64()), pa.field("udf_key", pa.string()), pa.field("input_signature", pa.string()),
    pa.field("physical_rows", pa.int64()), pa.field("file", pa.string()), pa.field("done", pa.binary()),
    pa.field("run_id", pa.string()),
])


def encode_state(entries: Iterable[FragmentRecord]) -> bytes:
    es = sorted(entries, key=lambda e: e.fragment_id)
    t = pa.table({
        "fragment_id": [e.fragment_id for e in es], "udf_key": [e.udf_key for e in es],
        "input_signature": [e.input_signature for e in es], "physical_rows": [e.physical_rows for e in es],
        "file": [e.output_file for e in es], "done": [e.done for e in es], "run_id": [e.run_id for e in es],
    }, schema=_STATE_SCHEMA)
    sink = pa.BufferOutputStream()
    # Compressing costs a millisecond even for a few entries, about as much as the rest of a
    # small run's fold; it pays only for large states (readers take either).
    compression = "zstd" if len(es) >= COMPRESS_STATE_FROM else None
    with pa.ipc.new_stream(sink, _STATE_SCHEMA, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
        w.write_table(t)
    return sink.getvalue().to_pybytes()


def decode_state(data: bytes) -> dict[int, FragmentRecord]:
    t = pa.ipc.open_stream(data).read_all().to_pydict()
    out = {}
    for i, fid in enumerate(t["fragment_id"]):
        out[fid] = FragmentRecord(fid, t["udf_key"][i], t["input_signature"][i], t["physical_rows"][i],
                                  base_file=None, output_file=t["file"][i], base_done=NO_ROWS,
                                  done=t["done"][i], run_id=t["run_id"][i])
    return out


_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


class CheckpointStore:
    """Small whole-object reads and writes under `<table>.lance/_geneva/<column>/`."""

    def __init__(self, loc: TableLocation, column: str):
        self.loc = loc
        self.prefix = f"{RECORD_DIR}/{column}"
        self.local = "://" not in loc.uri  # TableLocation keeps local tables as absolute paths

    def _session(self):
        # One per table and process: creating it builds an object store client (credentials, pools).
        from lance.file import LanceFileSession

        key = (self.loc.uri, tuple(sorted(self.loc.storage_options.items())))
        with _SESSIONS_LOCK:
            s = _SESSIONS.get(key)
            if s is None:
                s = _SESSIONS[key] = LanceFileSession(self.loc.uri, storage_options=self.loc.storage_options or None)
            return s

    def _local(self, rel: str) -> str:
        return os.path.join(self.loc.uri, self.prefix, rel)

    def put(self, rel: str, data: bytes) -> None:
        """Write the whole object at once: readers see the old object or the new one, never a part."""
        try:
            if self.local:
                path = self._local(rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)
                except BaseException:
                    _unlink(tmp)
                    raise
                return
            fd, tmp = tempfile.mkstemp(prefix="geneva-ckpt-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self._session().upload_file(tmp, f"{self.prefix}/{rel}")  # one PUT for an object this small
            finally:
                _unlink(tmp)
        except OSError as e:
            raise StorageError("table.uri", f"cannot write checkpoint {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def get(self, rel: str) -> Optional[bytes]:
        """The object's bytes, or None when there is none."""
        try:
            if self.local:
                with open(self._local(rel), "rb") as f:
                    return f.read()
            fd, tmp = tempfile.mkstemp(prefix="geneva-ckpt-")
            os.close(fd)
            try:
                self._session().download_file(f"{self.prefix}/{rel}", tmp)
                with open(tmp, "rb") as f:
                    return f.read()
            finally:
                _unlink(tmp)
        except FileNotFoundError:
            return None
        except OSError as e:
            if _not_found(e):
                return None
            raise StorageError("table.uri", f"cannot read checkpoint {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def list(self, rel: str) -> list[str]:
        """Names (relative to `rel`) of the objects directly under `rel`."""
        try:
            if self.local:
                d = self._local(rel)
                return sorted(n for n in os.listdir(d) if not n.startswith(".tmp-")) if os.path.isdir(d) else []
            base = f"{self.prefix}/{rel}/"
            return sorted(p[len(base):] for p in self._session().list(f"{self.prefix}/{rel}")
                          if p.startswith(base) and "/" not in p[len(base):])
        except OSError as e:
            raise StorageError("table.uri", f"cannot list checkpoints {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def delete(self, rel: str) -> None:
        """Delete an object; one that is already gone is fine (a fold may be run twice)."""
        self.delete_table_file(f"{self.prefix}/{rel}")

    def delete_table_file(self, trel: str) -> None:
        """Delete a file by its path relative to the table's root (a data file, a checkpoint)."""
        try:
            if self.local:
                os.remove(os.path.join(self.loc.uri, trel))
            else:
                self._session().delete_file(trel)
        except FileNotFoundError:
            pass
        except OSError as e:
            if not _not_found(e):
                raise StorageError("table.uri", f"cannot delete {trel} of {self.loc.uri}: {e}") from None

    # ----------------------------------------------------------------- the two kinds of objects

    def write_record(self, rec: FragmentRecord) -> None:
        self.put(f"{PENDING}/{record_name(rec.fragment_id)}", rec.to_json())

    def read_record(self, name: str) -> Optional[FragmentRecord]:
        """A pending record by file name; None when gone or unreadable (a foreign or damaged
        object is just a missing checkpoint: the fragment is computed again)."""
        data = self.get(f"{PENDING}/{name}")
        if data is None:
            return None
        try:
            return FragmentRecord.from_json(data)
        except (ValueError, TypeError, KeyError):
            return None

    def pending_names(self) -> list[str]:
        return [n for n in self.list(PENDING) if n.endswith(".json")]

    def read_records(self, names: list[str]) -> dict[str, FragmentRecord]:
        """File name -> record, for every one of `names` still there and readable."""
        recs = self.map(self.read_record, names)
        return {n: r for n, r in zip(names, recs) if r is not None}

    def map(self, fn, items: list) -> list:
        """fn over items: in threads on an object store (each call is a network round trip),
        in a plain loop on a local disk (each call takes microseconds, a pool far more)."""
        if self.local or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(MAX_THREADS, len(items))) as pool:
            return list(pool.map(fn, items))

    def read_state(self) -> dict[int, FragmentRecord]:
        data = self.get(STATE)
        if data is None:
            return {}
        try:
            return decode_state(data)
        except (pa.ArrowInvalid, KeyError, ValueError):
            return {}  # unreadable state: a cache miss (mode Missing recomputes), never a wrong column

    def write_state(self, entries: Iterable[FragmentRecord]) -> None:
        self.put(STATE, encode_state(entries))


def record_name(fragment_id: int) -> str:
    """A fragment's pending record: one per fragment, the newest task's overwrites an older one."""
    return f"{fragment_id}.json"


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _not_found(e: OSError) -> bool:
    text = str(e).lower()
    return "not found" in text or "no such file" in text or "does not exist" in text
