"""The contract between the operator and the backfill job it submits to Ray.

Both sides import this module; it needs neither Ray nor Arrow, because the operator
image has neither. The job is told what to do by its entrypoint: a `BackfillWork`, the
part of the spec the engine reads, as base64url JSON (no shell quoting can mangle it).
It tells the operator how far it got by printing `ProgressReport` lines to the driver log,
and a `ResultReport` line on success, which the operator reads through the Ray Job API:
the Ray pods then need no Kubernetes permissions at all. The operator learns the job's
state itself from Ray, as a `RayJobState`.

Operator and image may be of different releases (an `existingCluster` runs the user's
image). So a report is read leniently: keys it does not know (from a newer job) are
ignored, keys it lacks (from an older one) take their defaults, and a line that does not
parse is no report. The work is read strictly, because an engine that ignored a field it
does not know would compute something else than asked.
"""
from __future__ import annotations

import base64
import json
import re
from enum import Enum
from typing import ClassVar, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from .models import BackfillSpec, Mode, TableRef, Udf, _Model, unreserved_column

ENTRYPOINT_MODULE = "geneva_operator.engine.job"
PROGRESS_PREFIX = "GENEVA_PROGRESS "
RESULT_PREFIX = "GENEVA_RESULT "

# Top-level modules the job imports before it reaches the user's code (the engine and its
# dependencies, see pyproject's `engine` extra). One of them missing or too old means the
# image lacks the engine: every retry would fail the same way.
ENGINE_MODULES = frozenset({"geneva_operator", "pydantic", "pydantic_core", "yaml", "lance", "lancedb", "pyarrow", "numpy"})
# What Python itself prints, line-anchored so that the engine's own one-line report of a
# UDF module that cannot be imported ("error: spec.udf.function: cannot import module ...:
# No module named ...") never matches. `python -m` of a missing package prints
#   /usr/bin/python: Error while finding module specification for 'geneva_operator.engine.job'
#   (ModuleNotFoundError: No module named 'geneva_operator')
# on one line; a missing dependency ends a traceback with the bare exception line.
_MISSING_MODULE = re.compile(
    r"^(?:.*Error while finding module specification for '[\w.]+' \()?ModuleNotFoundError: No module named '([\w.]+)'",
    re.M,
)
_STALE_MODULE = re.compile(r"^ImportError: (cannot import name '\w+' from '([\w.]+)')", re.M)


# ---------------------------------------------------------------- the work


_SPEC = BackfillSpec.model_fields


class BackfillWork(_Model):
    """What the job computes: the spec's fields the engine reads, with the spec's own
    definitions (constraints, defaults). Where and when the job runs (cluster, auth,
    runtimeEnv, deadlines, retries, suspend, cleanup) is the operator's business."""

    table: TableRef = _SPEC["table"]
    column: str = _SPEC["column"]
    udf: Udf = _SPEC["udf"]
    where: Optional[str] = _SPEC["where"]
    mode: Mode = _SPEC["mode"]
    commit_every: int = _SPEC["commit_every"]
    concurrency: Optional[int] = _SPEC["concurrency"]

    _column_not_reserved = field_validator("column")(unreserved_column)


def work_from_spec(spec: BackfillSpec) -> BackfillWork:
    return BackfillWork.model_validate(spec.model_dump(include=set(BackfillWork.model_fields)))


def encode_work(work: BackfillWork) -> str:
    raw = json.dumps(work.to_wire(), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Operators before BackfillWork sent the whole spec: what a spec holds beyond the work is
# dropped. Any other key is a newer operator's and fails the decoding (see the docstring).
_SPEC_ONLY_KEYS = frozenset(f.alias or n for n, f in _SPEC.items() if n not in BackfillWork.model_fields)


def decode_work(text: str) -> BackfillWork:
    padded = text + "=" * (-len(text) % 4)
    doc = json.loads(base64.urlsafe_b64decode(padded))
    if isinstance(doc, dict):
        doc = {k: v for k, v in doc.items() if k not in _SPEC_ONLY_KEYS}
    return BackfillWork.model_validate(doc)


def entrypoint(work: BackfillWork, python: str = "python") -> str:
    """The Ray job entrypoint for the work (a shell command line)."""
    return f"{python} -m {ENTRYPOINT_MODULE} {encode_work(work)}"


# ---------------------------------------------------------------- the job's reports


class ProgressReport(BaseModel):
    """How far the job got, printed (PROGRESS_PREFIX + JSON) whenever fragments finish or a
    commit lands. Done counts computed fragments, committed or only checkpointed; committed
    those in the table: what a failed run leaves in the column, with the udf version."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    PREFIX: ClassVar[str] = PROGRESS_PREFIX

    fragments_done: int = 0
    fragments_total: int = 0
    rows_done: int = 0
    rows_total: int = 0
    fragments_committed: Optional[int] = None  # None: a job before these counts
    rows_committed: Optional[int] = None
    udf_version: Optional[str] = None
    rows_per_second: Optional[float] = None
    table_version: Optional[int] = None  # of the job's last commit

    def line(self) -> str:
        payload = self.model_dump(by_alias=True, exclude_none=True)
        return self.PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)


class ResultReport(ProgressReport):
    """The job's last line on success: its totals and the table version it leaves."""

    PREFIX: ClassVar[str] = RESULT_PREFIX

    committed_version: Optional[int] = None  # the read version when nothing was committed
    rows_computed: Optional[int] = None  # of rows_done, those not resumed from checkpoints
    rows_discarded: Optional[int] = None  # computed, never committed: another writer was first
    commits: Optional[int] = None
    seconds: Optional[float] = None


def parse_report(line: str) -> Optional[ProgressReport]:
    """The report a log line holds (a ResultReport or a ProgressReport), None for any other line."""
    for kind in (ResultReport, ProgressReport):
        idx = line.find(kind.PREFIX)
        if idx < 0:
            continue
        try:
            return kind.model_validate_json(line[idx + len(kind.PREFIX):])
        except ValidationError:
            return None
    return None


def last_report(log_text: str) -> Optional[ProgressReport]:
    """The newest report in a log excerpt, None if there is none."""
    for line in reversed(log_text.splitlines()):
        found = parse_report(line)
        if found is not None:
            return found
    return None


# ---------------------------------------------------------------- the job's state


class RayJobState(str, Enum):
    """A Ray job's status, as the Ray Job API names it (ray.job_submission.JobStatus)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (RayJobState.STOPPED, RayJobState.SUCCEEDED, RayJobState.FAILED)

    @classmethod
    def of(cls, text: str) -> Optional["RayJobState"]:
        """The state Ray's status string names, None for one this operator does not know."""
        return cls.__members__.get(text.upper())


def missing_engine_module(log_text: Optional[str]) -> Optional[str]:
    """Python's own words for an engine module the job could not import ("No module named
    'lancedb'", "cannot import name 'X' from 'lance'"), or None when the log shows none."""
    for match in _MISSING_MODULE.finditer(log_text or ""):
        if match.group(1).split(".")[0] in ENGINE_MODULES:
            return f"No module named '{match.group(1)}'"
    for match in _STALE_MODULE.finditer(log_text or ""):
        if match.group(2).split(".")[0] in ENGINE_MODULES:
            return match.group(1)
    return None
