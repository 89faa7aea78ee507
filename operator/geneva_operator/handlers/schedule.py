"""When each backfill is reconciled next: one schedule for the whole operator.

Every timed look at a resource goes through it: the next poll of a starting cluster or a
running job, a deadline, a cleanup TTL (`Decision.requeue_after`), the retry of a decision
dropped for an outdated body, and news from the job's log (a progress line, the result
line, the end of the log). The reconcile sets the next time from its decision (`at`); news
moves it earlier (`sooner`); nothing ticks in between.

It replaced two kopf timers per resource (1 s while polling, 5 s while waiting for a TTL):
at 200 backfills their ticks were a third of the operator's CPU, and the 1 s tick was most
of the status lag, since the job's result line had already arrived on the log stream.

Who waits: one kopf daemon per resource that has a next time (backfill.py), asleep in
`until_due`. A single task popping a heap would be cheaper still, but it would run outside
kopf: it would keep reconciling on a standby replica that kopf's peering has paused (kopf
stops daemons then), and it would need its own copy of every body (a daemon is handed a
live one). A sleeping daemon costs a coroutine and no CPU.

What it holds is derived, never state: each resource's next time follows from its status.
After a restart kopf's resume handler reconciles every resource, which sets them again; a
resource without a time yet is due at once. A daemon forgets its resource when it ends.
"""
from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Optional


@dataclass
class _Entry:
    due: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0  # reconciles of this resource running (see `running`)
    again: Optional[float] = None  # news that came while busy: due no later than this


class Schedule:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._entries: dict[Hashable, _Entry] = {}

    def _entry(self, key: Hashable) -> _Entry:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(due=self._clock())
        return entry

    def at(self, key: Hashable, delay: float) -> None:
        """The next look at `key` is `delay` seconds from now (what a reconcile decided)."""
        entry = self._entry(key)
        entry.due = self._clock() + max(0.0, delay)
        entry.changed.set()

    def sooner(self, key: Hashable, delay: float) -> None:
        """Look at `key` within `delay` seconds, or when already due earlier. News that comes
        during a reconcile is kept for after it: that reconcile may have read the log before
        the news came, and the next time it sets would otherwise hide it."""
        entry = self._entry(key)
        when = self._clock() + max(0.0, delay)
        if entry.busy:
            entry.again = when if entry.again is None else min(entry.again, when)
        elif when < entry.due:
            entry.due = when
            entry.changed.set()

    def settle(self, key: Hashable) -> None:
        """`key` needs no further look (its state settled): a sleeper waits until a time is set
        again or it is stopped (kopf stops it once the settled status is seen)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.due, entry.again = math.inf, None
            entry.changed.set()

    def drop(self, key: Hashable) -> None:
        """Forget `key` (its daemon ended)."""
        self._entries.pop(key, None)

    def due_in(self, key: Hashable) -> Optional[float]:
        """Seconds until `key` is due (negative: overdue); None when it has no time."""
        entry = self._entries.get(key)
        return None if entry is None or entry.due == math.inf else entry.due - self._clock()

    def __len__(self) -> int:
        """Resources with a next time."""
        return sum(1 for e in self._entries.values() if e.due != math.inf)

    async def until_due(self, key: Hashable, stop: "asyncio.Future[object]") -> bool:
        """Sleep until `key` is due; False when `stop` (a task waiting for kopf's stop flag,
        made once per daemon) ended first. The time may move while asleep, either way."""
        entry = self._entry(key)
        while not stop.done():
            wait = entry.due - self._clock()
            if wait <= 0:
                return True
            entry.changed.clear()
            changed = asyncio.ensure_future(entry.changed.wait())
            try:
                await asyncio.wait({changed, stop}, timeout=None if wait == math.inf else wait,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                changed.cancel()
            entry = self._entry(key)
        return False

    class _Running:
        def __init__(self, schedule: "Schedule", key: Hashable):
            self.schedule, self.key = schedule, key

        def __enter__(self) -> None:
            self.schedule._entry(self.key).busy += 1

        def __exit__(self, *exc: object) -> None:
            entry = self.schedule._entries.get(self.key)
            if entry is None:
                return
            entry.busy -= 1
            if not entry.busy and entry.again is not None:
                entry.due, entry.again = min(entry.due, entry.again), None
                entry.changed.set()

        async def __aenter__(self) -> None:  # to share an `async with` with the resource's lock
            self.__enter__()

        async def __aexit__(self, *exc: object) -> None:
            self.__exit__(*exc)

    def running(self, key: Hashable) -> "Schedule._Running":
        """Around one reconcile of `key`: news meanwhile is applied after it (see `sooner`)."""
        return Schedule._Running(self, key)
