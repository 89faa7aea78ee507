"""The resource's spec and status as the handlers read and write them: parsing (tolerant of
keys the models do not know) and the merge patch from the stored status to the decided one."""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

from pydantic import ValidationError

from ..api.models import BackfillSpec, BackfillStatus
from ..lifecycle import SpecInvalid

logger = logging.getLogger(__name__)

_STATUS_KEYS = {f.alias or name for name, f in BackfillStatus.model_fields.items()}


def parse_spec(spec: Mapping[str, Any]) -> tuple[Optional[BackfillSpec], Optional[SpecInvalid]]:
    try:
        return BackfillSpec.model_validate(dict(spec)), None
    except ValidationError as e:
        first = e.errors()[0]
        where = "spec." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "spec"
        return None, SpecInvalid(where, f"{first['msg']} ({e.error_count()} error(s))")


def spec_of(meta: Mapping[str, Any], spec: Mapping[str, Any], memo: Any = None) -> tuple[Optional[BackfillSpec], Optional[SpecInvalid]]:
    """parse_spec, remembered in the resource's kopf memo by (uid, generation): kopf asks the
    timers' filters every second for every resource, the spec only changes with
    metadata.generation, and validating it was a tenth of the operator's CPU at 200
    backfills. The parsed spec is read-only."""
    key = (meta.get("uid"), meta.get("generation"))
    if memo is None or None in key:
        return parse_spec(spec)
    cached = memo.get("parsed_spec")
    if cached is None or cached[0] != key:
        cached = memo.parsed_spec = (key, parse_spec(spec))
    return cached[1]


def parse_status(status: Mapping[str, Any]) -> BackfillStatus:
    # Ignore keys the model does not know (another tool's, or kopf's own bookkeeping).
    known = {k: v for k, v in dict(status).items() if k in _STATUS_KEYS}
    try:
        return BackfillStatus.model_validate(known)
    except ValidationError:
        logger.warning("unreadable status; starting from an empty one")
        return BackfillStatus()


def status_patch(old: Mapping[str, Any], new: BackfillStatus) -> dict[str, Any]:
    """A merge patch from the stored status to `new` (None deletes a key); {} if equal."""
    wire = new.to_wire()
    patch: dict[str, Any] = {k: v for k, v in wire.items() if old.get(k) != v}
    patch.update({k: None for k in old if k in _STATUS_KEYS and k not in wire})
    return patch
