"""Opening the table a spec names, on local disk, s3:// or gs://."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import lance

from ..api.models import TableRef
from .errors import SpecError, StorageError

ROW_OFFSET_MASK = 0xFFFFFFFF  # a row address is fragment_id << 32 | offset

# Fail fast on unreachable storage instead of object_store's long default retry budget.
_DEFAULT_REMOTE_OPTIONS = {"connect_timeout": "10s", "timeout": "120s", "client_max_retries": "3"}


@dataclass(frozen=True)
class TableLocation:
    """Where a table's Lance dataset lives, and how to reach it. Picklable, so Ray tasks get it."""

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_ref(cls, ref: TableRef) -> "TableLocation":
        base = ref.uri.rstrip("/")
        opts = dict(ref.storage_options)
        if "://" in base and not base.startswith("file://"):
            for k, v in _DEFAULT_REMOTE_OPTIONS.items():
                opts.setdefault(k, v)
        else:
            base = os.path.abspath(base.removeprefix("file://"))
        # LanceDB keeps each table as a Lance dataset named <table>.lance under the database URI.
        return cls(uri=f"{base}/{ref.name}.lance", storage_options=opts)

    def path(self, *parts: str) -> str:
        return "/".join([self.uri, *parts])

    def open(self, version: Optional[int] = None) -> lance.LanceDataset:
        try:
            return lance.dataset(self.uri, version=version, storage_options=self.storage_options or None)
        except ValueError as e:
            text = str(e)
            if "not found" in text.lower() or "does not exist" in text.lower():
                db = os.path.dirname(self.uri)
                if "://" not in self.uri and not os.path.isdir(db):  # the database is missing, not just the table
                    raise SpecError("table.uri", f"no database directory {db}") from None
                raise SpecError("table.name", f"no table at {self.uri}: {_first_line(text)}") from None
            raise StorageError("table.uri", f"cannot open {self.uri}: {_first_line(text)}") from None
        except OSError as e:
            raise StorageError("table.uri", f"cannot reach {self.uri}: {_first_line(str(e))}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else text


def column_ids(lance_schema, name: str) -> frozenset[int]:
    """Every field id of a column: its own and all its children's. Lance lists a nested
    column's leaf ids in DataFile.fields (a list<float32> column's `item`, a struct's
    members), never the column's own id, so a file is found by any of them."""
    ids, todo = set(), [lance_schema.field(name)]
    while todo:
        f = todo.pop()
        ids.add(f.id())
        todo += f.children()
    return frozenset(ids)


def field_file(fragment_metadata, ids: frozenset[int]) -> Optional[str]:
    """Path of the data file holding a column (its column_ids) in a fragment (None: the
    column has no file yet, i.e. it is all null in this fragment)."""
    return _field_file(fragment_metadata.files, ids)


def _field_file(files, ids: frozenset[int]) -> Optional[str]:
    # A column normally lives in one file; one split over several (a struct member added
    # later) is named by all of them, so that a rewrite of any part changes the name.
    paths = sorted(f.path for f in files if not ids.isdisjoint(f.fields))
    return "+".join(paths) if paths else None


def input_signature(fragment_metadata, columns: list[frozenset[int]]) -> str:
    """What the inputs of a fragment are made of (`columns`: each input's column_ids). Any
    rewrite of an input column (an update, another backfill of it) changes a file path,
    which invalidates records and checkpoints."""
    files = fragment_metadata.files  # built anew on every access: read it once
    paths = sorted({_field_file(files, ids) or "-" for ids in columns})
    return f"{fragment_metadata.physical_rows}:" + ",".join(paths)
