"""The contract between the operator and the backfill job it submits to Ray.

Both sides import this module; it needs neither Ray nor Arrow, because the operator
image has neither. The job is told what to do by its entrypoint (the spec travels as
base64url JSON, so no shell quoting can mangle it), and tells the operator how far it
got by printing progress lines to the driver log, which the operator already reads
through the Ray Job API: the Ray pods then need no Kubernetes permissions at all.
"""
from __future__ import annotations

import base64
import json
import re
from typing import Any, Optional

from .models import BackfillSpec

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


def encode_spec(spec: BackfillSpec) -> str:
    raw = json.dumps(spec.to_wire(), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_spec(text: str) -> BackfillSpec:
    padded = text + "=" * (-len(text) % 4)
    return BackfillSpec.model_validate(json.loads(base64.urlsafe_b64decode(padded)))


def entrypoint(spec: BackfillSpec, python: str = "python") -> str:
    """The Ray job entrypoint for a spec (a shell command line)."""
    return f"{python} -m {ENTRYPOINT_MODULE} {encode_spec(spec)}"


def format_progress(payload: dict[str, Any]) -> str:
    """One log line. Keys: fragmentsDone, fragmentsTotal, rowsDone, rowsTotal,
    rowsPerSecond, tableVersion (all optional except the four counts)."""
    return PROGRESS_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)


def format_result(payload: dict[str, Any]) -> str:
    """The job's last line on success: same keys as progress plus committedVersion."""
    return RESULT_PREFIX + json.dumps(payload, separators=(",", ":"), sort_keys=True)


def _parse(prefix: str, line: str) -> Optional[dict[str, Any]]:
    idx = line.find(prefix)
    if idx < 0:
        return None
    try:
        value = json.loads(line[idx + len(prefix):])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def last_progress(log_text: str) -> Optional[dict[str, Any]]:
    """The newest progress (or result) payload in a log excerpt, None if there is none."""
    for line in reversed(log_text.splitlines()):
        found = _parse(RESULT_PREFIX, line) or _parse(PROGRESS_PREFIX, line)
        if found is not None:
            return found
    return None


def parse_progress_line(line: str) -> Optional[dict[str, Any]]:
    return _parse(PROGRESS_PREFIX, line) or _parse(RESULT_PREFIX, line)


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
