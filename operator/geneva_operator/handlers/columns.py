"""Which GenevaBackfills claim which table column: a kopf index (one watch, no requests).

The rule itself is pure, in geneva_operator.columns. The index covers the namespaces the
operator watches; backfills of one table from namespaces another operator instance watches
are not seen (one operator per table is the supported setup).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import kopf

from .. import lifecycle
from ..api.models import GROUP, PLURAL, VERSION, BackfillSpec, State
from ..columns import Claim, blocker, column_key
from ..lifecycle import ColumnHeld
from .status import parse_status, spec_of


def claim(meta: Mapping[str, Any], spec: Optional[BackfillSpec], status: Mapping[str, Any]) -> Optional[Claim]:
    if spec is None:
        return None
    st = parse_status(status)
    state = lifecycle.state_of(spec, st)
    starting = (state in lifecycle.FINISHED and lifecycle.new_run_needed(spec, st)) or (
        state in (State.Suspending, State.Suspended) and not spec.suspend
    )
    return Claim(meta["namespace"], meta["name"], meta["uid"], meta.get("creationTimestamp") or "", st.phase, starting)


@kopf.index(GROUP, VERSION, PLURAL)
def backfill_columns(meta: kopf.Meta, spec: kopf.Spec, status: kopf.Status, memo: Any = None,
                     **_: Any) -> dict[tuple[str, str, str], Claim]:
    parsed = spec_of(meta, spec, memo)[0]
    mine = claim(meta, parsed, status)
    if mine is None or meta.get("deletionTimestamp"):
        return {}  # claims nothing (an empty result also drops an earlier claim)
    return {column_key(parsed.table.uri, parsed.table.name, parsed.column): mine}


def column_busy(body: Mapping[str, Any], index: Mapping[tuple[str, str, str], Any], memo: Any = None) -> Optional[ColumnHeld]:
    """Why this backfill must wait before starting, or None."""
    spec = spec_of(body["metadata"], body.get("spec") or {}, memo)[0]
    me = claim(body["metadata"], spec, body.get("status") or {})
    if me is None or not me.waits:
        return None
    key = column_key(spec.table.uri, spec.table.name, spec.column)
    other = blocker(me, index.get(key) or ())
    if other is None:
        return None
    return ColumnHeld(
        other.ref,
        f"GenevaBackfill {other.ref} is backfilling column {spec.column!r} of table {spec.table.name!r}; "
        "this run starts when it ends",
    )
