"""Committing finished fragments as Lance data replacements, in groups, under concurrency.

Each commit starts from the latest table version, not the pinned one: appends and other
columns' backfills that landed meanwhile are kept (a DataReplacement touches only our
column's file in fragments that still hold exactly the inputs and the column file we
computed from). A fragment rewritten meanwhile (compaction, an update, another run of this
column) is left out and reported, so the caller can plan it again; a lost commit race is
retried from the newest version.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import lance
import pyarrow as pa
from lance.commit import CommitConflictError
from lance.fragment import DataFile

from .errors import SpecError, StorageError
from .execute import FragmentResult
from .table import TableLocation, field_file, input_signature

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10


@dataclass
class Committer:
    location: TableLocation
    column: str
    output_type: pa.DataType
    input_columns: list[str]
    commit_every: int
    on_commit: Callable[[int, list[FragmentResult]], None] = lambda version, results: None
    pending: list[FragmentResult] = field(default_factory=list)
    stale: list[FragmentResult] = field(default_factory=list)  # rewritten by someone else meanwhile
    version: Optional[int] = None  # newest version we committed
    dataset: Optional[lance.LanceDataset] = None  # that version, as the commit returned it
    commits: int = 0
    _template: Optional[tuple[int, DataFile]] = None  # (column field id, a DataFile of one of our outputs)

    def add(self, result: FragmentResult) -> None:
        self.pending.append(result)
        if len(self.pending) >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        group, self.pending = self.pending, []
        for attempt in range(MAX_ATTEMPTS):
            ds = self.ensure_column()
            current, stale = self._still_valid(ds, group)
            self.stale.extend(stale)
            group = current
            if not group:
                return
            files = self._data_files(ds, group)
            op = lance.LanceOperation.DataReplacement(
                [lance.LanceOperation.DataReplacementGroup(r.fragment_id, f) for r, f in zip(group, files)])
            try:
                new = lance.LanceDataset.commit(self.location.uri, op, read_version=ds.version,
                                                storage_options=self.location.storage_options or None)
            except CommitConflictError as e:
                log.info("commit conflict (attempt %d), rebasing on the newest version: %s", attempt + 1, e)
                time.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            self.version, self.dataset = new.version, new
            self.commits += 1
            self.on_commit(new.version, group)
            return
        raise StorageError("table.uri", f"could not commit to {self.location.uri} after {MAX_ATTEMPTS} conflicting attempts")

    def _data_files(self, ds: lance.LanceDataset, group: list[FragmentResult]) -> list[DataFile]:
        """The DataFile entries of the group's outputs. Every output of a run is a file of the
        same one-column schema in the same format version, so its field ids and column indices
        are those of any other: DataFile.create (which opens the file to read its footer, a
        round trip per file) runs once per column field id, the rest are copies with their own
        path and size. An output whose size we do not know (resumed from an earlier attempt)
        is read as before."""
        out_id = ds.lance_schema.field(self.column).id()
        if self._template is not None and self._template[0] != out_id:
            self._template = None  # the column was dropped and created again meanwhile
        unknown = [r for r in group if r.file_size is None]
        if self._template is None and not unknown:
            unknown = group[:1]
        made: dict[str, DataFile] = {}
        if unknown:
            with ThreadPoolExecutor(min(8, len(unknown))) as pool:
                made = dict(zip((r.output_file for r in unknown), pool.map(lambda r: DataFile.create(ds, r.output_file), unknown)))
            if self._template is None:
                self._template = (out_id, made[unknown[0].output_file])
        t = self._template[1]
        return [made.get(r.output_file) or DataFile(r.output_file, list(t.fields), list(t.column_indices), t.file_major_version,
                                                    t.file_minor_version, r.file_size) for r in group]

    def ensure_column(self) -> lance.LanceDataset:
        """The newest version, creating the (nullable, all-null, metadata-only) column on the
        first commit: only once real data is ready, so a run that fails earlier leaves the
        table exactly as it was."""
        for attempt in range(MAX_ATTEMPTS):
            ds = self.location.open()
            if self.column in ds.schema.names:
                existing = ds.schema.field(self.column).type
                if existing != self.output_type:
                    raise SpecError("column", f"column {self.column!r} was created meanwhile with type {existing}, not {self.output_type}")
                return ds
            try:
                ds.add_columns(pa.field(self.column, self.output_type, nullable=True))
            except CommitConflictError:
                time.sleep(min(2.0, 0.05 * 2**attempt))
        raise StorageError("table.uri", f"could not add column {self.column!r} to {self.location.uri}")

    def _still_valid(self, ds: lance.LanceDataset, group: list[FragmentResult]):
        out_id = ds.lance_schema.field(self.column).id()
        in_ids = [ds.lance_schema.field(c).id() for c in self.input_columns if c in ds.schema.names]
        ok, stale = [], []
        for r in group:
            frag = ds.get_fragment(r.fragment_id)
            meta = frag.metadata if frag is not None else None
            if (meta is not None and len(in_ids) == len(self.input_columns)
                    and input_signature(meta, in_ids) == r.input_signature
                    and field_file(meta, out_id) == r.base_file):
                ok.append(r)
            elif meta is not None and field_file(meta, out_id) == r.output_file:
                continue  # our own earlier commit that we lost track of (a retried commit that did land)
            else:
                stale.append(r)
        return ok, stale
