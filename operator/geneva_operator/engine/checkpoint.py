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

Records and state are small objects next to the table (objects.py): they reach exactly where
the table does, with the same storage options and credentials.
"""
from __future__ import annotations

import base64
import json
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional

import lance
import numpy as np
import pyarrow as pa

from .objects import ObjectStore
from .table import TableLocation, column_ids, field_file

if TYPE_CHECKING:
    from .commit import Committer
    from .execute import FragmentResult
    from .plan import Plan

RECORD_DIR = "_geneva"
PENDING = "pending"
STATE = "state.arrow"
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


class CheckpointStore(ObjectStore):
    """The two kinds of objects under `<table>.lance/_geneva/<column>/`."""

    def __init__(self, loc: TableLocation, column: str):
        super().__init__(loc, f"{RECORD_DIR}/{column}")

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


# ----------------------------------------------------------------- loading and folding


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


@dataclass
class FoldInputs:
    """What a run gathers for its fold, round after round (see fold)."""

    known: dict[str, FragmentRecord]  # records in memory, newest last: the fold needs not read them back
    leftovers: bool  # records were there when the run started (a dead attempt's, or a run's not folded)
    orphans: list[str] = field(default_factory=list)  # outputs of this attempt that were never committed
    newest: Optional[lance.LanceDataset] = None  # the version our last commit made
    carried: dict[int, FragmentRecord] = field(default_factory=dict)  # over compactions, by the plans
    state_outdated: bool = False

    @property
    def needed(self) -> bool:
        """Even a run that computed nothing folds these (a run over a folded state writes nothing)."""
        return self.leftovers or bool(self.carried) or self.state_outdated

    def planned(self, p: "Plan") -> None:
        self.carried.update(p.carried)
        self.state_outdated |= p.state_outdated

    def computed(self, r: "FragmentResult") -> None:
        if r.record is not None:
            self.known[record_name(r.fragment_id)] = r.record

    def committed(self, committer: "Committer") -> None:
        self.newest = committer.dataset or self.newest
        # A stale result's file was never committed, by us or anyone: its record is the only
        # way to it, and a record can only become committable again if the fragment got back
        # the exact files it was computed from, which never happens (file names are unique).
        self.orphans += [r.output_file for r in committer.stale]


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
