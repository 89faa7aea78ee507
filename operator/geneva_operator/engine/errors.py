"""Errors the engine reports to people: each names the spec field it is about."""
from __future__ import annotations


class BackfillError(Exception):
    """A backfill cannot run or failed. `field` is the spec field at fault, as users write it
    (camelCase wire path such as `udf.inputColumns`), or None when no single field is."""

    def __init__(self, field: str | None, message: str):
        self.field = field
        self.message = message
        super().__init__(field, message)

    def __str__(self) -> str:
        return f"spec.{self.field}: {self.message}" if self.field else self.message


class SpecError(BackfillError):
    """The spec does not fit the table or the code: nothing was written."""


class UdfError(BackfillError):
    """The user function failed or returned something that does not fit `udf.outputType`."""


class StorageError(BackfillError):
    """The table's storage could not be reached or read."""
