"""Opening the table a spec names, on local disk, s3:// or gs://."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

import lance

from ..api.models import TableRef
from .errors import SpecError, StorageError

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
                raise SpecError("table.name", f"no table at {self.uri}: {_first_line(text)}") from None
            raise StorageError("table.uri", f"cannot open {self.uri}: {_first_line(text)}") from None
        except OSError as e:
            raise StorageError("table.uri", f"cannot reach {self.uri}: {_first_line(str(e))}") from None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:500] if text.strip() else text


def field_file(fragment_metadata, field_id: int) -> Optional[str]:
    """Path of the data file holding a field in a fragment (None: the field has no file yet,
    i.e. it is all null in this fragment)."""
    return _field_file(fragment_metadata.files, field_id)


def _field_file(files, field_id: int) -> Optional[str]:
    for f in files:
        if field_id in f.fields:
            return f.path
    return None


def input_signature(fragment_metadata, field_ids: list[int]) -> str:
    """What the inputs of a fragment are made of. Any rewrite of an input column (an update,
    another backfill of it) changes a file path, which invalidates records and checkpoints."""
    files = fragment_metadata.files  # built anew on every access: read it once
    paths = sorted({_field_file(files, fid) or "-" for fid in field_ids})
    return f"{fragment_metadata.physical_rows}:" + ",".join(paths)
