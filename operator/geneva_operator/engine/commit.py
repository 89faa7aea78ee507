"""Committing finished fragments as Lance data replacements, in groups, under concurrency.

Each commit starts from the latest table version, not the pinned one: appends and other
columns' backfills that landed meanwhile are kept (a DataReplacement touches only our
column's file in fragments that still hold exactly the inputs and the column file we
computed from). A fragment rewritten meanwhile (compaction, an update, another run of this
column) is left out and reported, so the caller can plan it again; a lost commit race is
retried from the newest version. The first commit of a new column is a Merge that adds the
column and the group's files at once (see Committer._schema_with_column).
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
from lance.schema import LanceSchema

from .errors import SpecError, StorageError
from .execute import FragmentResult
from .table import TableLocation, column_ids, field_file, input_signature

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
    uncommitted: list[FragmentResult] = field(default_factory=list)  # computed, waiting for their group's commit
    stale: list[FragmentResult] = field(default_factory=list)  # rewritten by someone else meanwhile
    version: Optional[int] = None  # newest version we committed
    dataset: Optional[lance.LanceDataset] = None  # that version, as the commit returned it
    _template: Optional[tuple[int, DataFile]] = None  # (column field id, a DataFile of one of our outputs)

    def add(self, result: FragmentResult) -> None:
        self.uncommitted.append(result)
        if len(self.uncommitted) >= self.commit_every:
            self.flush()

    def flush(self) -> None:
        if not self.uncommitted:
            return
        group, self.uncommitted = self.uncommitted, []
        for attempt in range(MAX_ATTEMPTS):
            ds = self.location.open()
            schema = None
            if self.column not in ds.schema.names:
                schema = self._schema_with_column(ds, group)
                if schema is None:
                    ds = self.ensure_column()
            else:
                self._check_type(ds)
            current, stale = self._still_valid(ds, group)
            self.stale.extend(stale)
            group = current
            if not group:
                if schema is not None:
                    self.ensure_column()  # as the first commit would have: a run that computed anything leaves the column
                return
            if schema is not None:
                op = self._merge(ds, schema, group)
            else:
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
            except OSError as e:  # a refusal of ours (a broken invariant) or of the storage: no raw traceback
                raise StorageError("table.uri", f"committing fragments {[r.fragment_id for r in group]} to "
                                                f"{self.location.uri} failed: {str(e).splitlines()[0][:500]}") from None
            self.version, self.dataset = new.version, new
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
            if len(unknown) == 1:  # the common case: a pool would cost more than the one read
                made = {unknown[0].output_file: DataFile.create(ds, unknown[0].output_file)}
            else:
                with ThreadPoolExecutor(min(8, len(unknown))) as pool:
                    made = dict(zip((r.output_file for r in unknown), pool.map(lambda r: DataFile.create(ds, r.output_file), unknown)))
            if self._template is None:
                self._template = (out_id, made[unknown[0].output_file])
        t = self._template[1]
        return [made.get(r.output_file) or DataFile(r.output_file, list(t.fields), list(t.column_indices), t.file_major_version,
                                                    t.file_minor_version, r.file_size) for r in group]

    def _schema_with_column(self, ds: lance.LanceDataset, group: list[FragmentResult]) -> Optional[LanceSchema]:
        """The table's schema plus our column, so that the first commit creates the column and
        fills it at once (one commit on the run's tail instead of two in a row). None when that
        cannot be built safely here, and the column then gets a commit of its own first: the
        column must be a leaf (one field id, one column in each output file), every output's
        size known, and LanceSchema.from_pyarrow, which numbers fields depth first from 0, must
        give every existing field exactly its id in the table and the new one the next id
        Lance would give it. A dropped column whose values stay in data files keeps its id in
        use (max_field_id): a new field with that id would read them."""
        if any(r.file_size is None for r in group) or _file_version(ds) is None:
            return None
        expected = ds.schema.append(pa.field(self.column, self.output_type, nullable=True))
        schema = LanceSchema.from_pyarrow(expected)
        old, new = _field_ids(ds.lance_schema.fields()), _field_ids(schema.fields())
        one_leaf_added = new[:-1] == old and new[-1][0] == self.column
        if (not one_leaf_added or new[-1][1] != ds.max_field_id + 1
                or not schema.to_pyarrow().equals(expected, check_metadata=True)):
            return None
        return schema

    def _merge(self, ds: lance.LanceDataset, schema: LanceSchema, group: list[FragmentResult]) -> lance.LanceOperation.Merge:
        """A Merge (the operation add_columns commits) of the new schema and every fragment,
        those of the group with their output file added. It conflicts with any concurrent
        change to the table, so it is retried from the newest version like any lost race."""
        out_id = schema.field(self.column).id()
        major, minor = _file_version(ds)
        by_id = {r.fragment_id: r for r in group}
        fragments = []
        for frag in ds.get_fragments():
            meta = frag.metadata
            r = by_id.get(frag.fragment_id)
            if r is not None:
                meta.files.append(DataFile(r.output_file, [out_id], [0], major, minor, r.file_size))
            fragments.append(meta)
        # Later groups copy this entry instead of reading an output file's footer.
        self._template = (out_id, DataFile("", [out_id], [0], major, minor, 0))
        return lance.LanceOperation.Merge(fragments, schema)

    def _check_type(self, ds: lance.LanceDataset) -> None:
        existing = ds.schema.field(self.column).type
        if existing != self.output_type:
            raise SpecError("column", f"column {self.column!r} was created meanwhile with type {existing}, not {self.output_type}")

    def ensure_column(self) -> lance.LanceDataset:
        """The newest version, creating the (nullable, all-null, metadata-only) column if it is
        not there yet: only once real data is ready, so a run that fails earlier leaves the
        table exactly as it was."""
        for attempt in range(MAX_ATTEMPTS):
            ds = self.location.open()
            if self.column in ds.schema.names:
                self._check_type(ds)
                return ds
            try:
                ds.add_columns(pa.field(self.column, self.output_type, nullable=True))
            except CommitConflictError:
                time.sleep(min(2.0, 0.05 * 2**attempt))
                continue
            return ds  # add_columns moved it to the version it committed
        raise StorageError("table.uri", f"could not add column {self.column!r} to {self.location.uri}")

    def _still_valid(self, ds: lance.LanceDataset, group: list[FragmentResult]):
        out_ids = column_ids(ds.lance_schema, self.column) if self.column in ds.schema.names else None
        in_ids = [column_ids(ds.lance_schema, c) for c in self.input_columns if c in ds.schema.names]
        ok, stale = [], []
        for r in group:
            frag = ds.get_fragment(r.fragment_id)
            meta = frag.metadata if frag is not None else None
            current = field_file(meta, out_ids) if meta is not None and out_ids is not None else None
            if (meta is not None and len(in_ids) == len(self.input_columns)
                    and input_signature(meta, in_ids) == r.input_signature
                    and current == r.base_file):
                ok.append(r)
            elif meta is not None and current == r.output_file:
                continue  # our own earlier commit that we lost track of (a retried commit that did land)
            else:
                stale.append(r)
        return ok, stale


def _field_ids(fields) -> list[tuple[str, int]]:
    """(name, id) of every field, children after their parent."""
    out = []
    for f in fields:
        out.append((f.name(), f.id()))
        out += _field_ids(f.children())
    return out


def _file_version(ds: lance.LanceDataset) -> Optional[tuple[int, int]]:
    """(major, minor) of the data files the workers wrote: the table's own format version."""
    try:
        major, minor = (int(x) for x in ds.data_storage_version.split("."))
    except ValueError:
        return None
    return major, minor
