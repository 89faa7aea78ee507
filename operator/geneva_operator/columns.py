"""One backfill at a time per table column.

Two runs writing the same column at once would each commit their own values over the
other's, fragment by fragment: with different udf versions the column ends up a mix of
both, and both report success. The engine keeps each run exact but cannot see another run,
so the operator serializes them: a backfill about to start (phase Pending, no job yet)
waits while another backfill of the same column is active. Pure: the handlers gather the
claims from a kopf index of GenevaBackfills (handlers/columns.py).

Order: a backfill already past Pending (its cluster or job on the way) holds the column;
among those still Pending, the oldest (creationTimestamp, then namespace/name) goes first,
so two backfills applied together agree on who waits without talking to each other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

from .api.models import Phase

HOLDING_PHASES = frozenset({Phase.Provisioning.value, Phase.Running.value})
WAITING_PHASES = frozenset({None, Phase.Pending.value})


@dataclass(frozen=True)
class Claim:
    namespace: str
    name: str
    uid: str
    created: str  # metadata.creationTimestamp (RFC 3339, so strings sort by time)
    phase: Optional[str]
    # Not Pending yet, but will be at its next reconcile: finished with a new udf.version
    # in its spec, or suspended with spec.suspend set back to false.
    starting: bool = False

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def holds(self) -> bool:
        return self.phase in HOLDING_PHASES

    @property
    def waits(self) -> bool:
        return self.phase in WAITING_PHASES or self.starting

    def _order(self) -> tuple[str, str, str]:
        return self.created, self.namespace, self.name


def column_key(uri: str, table: str, column: str) -> tuple[str, str, str]:
    """The same table however its URI is spelled (a trailing slash)."""
    return uri.rstrip("/"), table, column


def blocker(me: Claim, claims: Iterable[Claim]) -> Optional[Claim]:
    """The backfill `me` must wait for before starting, if any. Only a backfill about to start
    ever waits: one that holds the column never stops for another."""
    if not me.waits:
        return None
    others = [c for c in claims if c.uid != me.uid]
    holders = sorted((c for c in others if c.holds), key=Claim._order)
    if holders:
        return holders[0]
    earlier = sorted((c for c in others if c.waits and c._order() < me._order()), key=Claim._order)
    return earlier[0] if earlier else None
