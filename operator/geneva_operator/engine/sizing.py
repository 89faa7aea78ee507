"""How many fragments each Ray task gets: sized from the fragment time measured so far, so
that a table of skewed fragments does not leave one slot straggling while the others idle,
and a cheap udf still pays Ray's per-task cost once for several fragments.

Tasks are the unit of scheduling, fragments the unit of work and of checkpoints. A task of
several fragments pays Ray's per-task cost once for all of them: lease, dispatch and report
took ~6 ms a task on a 2-core box, more than a 62k-row fragment's work with a trivial udf
(1M rows in 16 fragments on 2 slots: one fragment a task 103 ms, 2 tasks of 8 64 ms). But a
task, once submitted, cannot be cut short, so with a slow udf a task of many fragments is a
straggler in waiting: 16 fragments, the first 10x the rows of each other, 2 slots, dealt
into 2 tasks by rows with at most 8 fragments a task, gives one task 17 units of work and
the other 8, a makespan 1.36x the ideal.

So tasks are sized one at a time, when there is room in flight for one, from what is known
then (guided self-scheduling, in its "factoring" form):

- largest fragments first (LPT), across tasks and within one: a big fragment started last is
  what makes a tail;
- a task takes at most 1/(TAIL_FACTOR x slots) of the rows not yet handed out, so sizes shrink
  as the end approaches and the last tasks are single fragments: slots end within about one
  fragment's time of each other, whatever the sizes and whichever slot got the big ones;
- but at least MIN_TASK_SECONDS of estimated work (the time per row measured on the fragments
  reported so far), so that the per-task cost stays a few percent of a task: with a cheap udf
  this floor and the cap of MAX_FRAGMENTS_PER_TASK decide, and tasks are 8 fragments as before;
  the floor never asks more than a slot's equal part of the work not reported yet, so that a
  small table on a cheap udf still ends in one task a slot, not in one task doing it all;
- until a fragment has been measured nothing is known of the udf's speed, so the first task
  of each slot is one fragment (the caller keeps no more than `slots` in flight until then):
  one task a slot more than dealing blind would cost, ~6 ms, against a straggler of seconds.

The rate only sets the floor: the shrinking share is counted in rows, so a rate inflated by a
slow first fragment makes tasks smaller (more per-task cost), never a straggler.
"""
from __future__ import annotations

from collections import deque
from typing import Iterable, Optional, Sequence

from .plan import WorkUnit

# The cap bounds what a worker death costs (its unreported fragments run again) and what a
# rate measured too low could make a straggler of.
MAX_FRAGMENTS_PER_TASK = 8

# A task's estimated work at least this, the cap permitting: ~6 ms of Ray's per task is ~6%
# of it, and the slots' finishing times still differ by no more than about this much.
MIN_TASK_SECONDS = 0.1

# A task takes at most 1/(TAIL_FACTOR x slots) of the rows left: 2 halves the work left
# every round of tasks (a few rounds for any table), where 1 would hand each slot an equal
# share at once and leave nothing to balance a slot that started late.
TAIL_FACTOR = 2


def next_task_size(left: Sequence[WorkUnit], slots: int, seconds_per_row: Optional[float], *,
                   rows_left: Optional[int] = None, rows_in_flight: int = 0,
                   max_per_task: int = MAX_FRAGMENTS_PER_TASK) -> int:
    """How many of `left` (the units not handed out yet, largest first) the next task takes,
    with `seconds_per_row` the measured rate (None: nothing measured yet) and `rows_in_flight`
    the rows handed out and not reported yet. `rows_left` is sum(u.rows for u in left), when
    the caller keeps it."""
    if not left:
        return 0
    if seconds_per_row is None:
        return 1
    slots = max(1, slots)
    rows_left = sum(u.rows for u in left) if rows_left is None else rows_left
    share = rows_left / (TAIL_FACTOR * slots)
    floor = MIN_TASK_SECONDS / seconds_per_row if seconds_per_row > 0 else float("inf")
    budget = max(share, min(floor, (rows_left + rows_in_flight) / slots))  # rows
    n, rows = 1, left[0].rows
    while n < min(len(left), max_per_task) and rows + left[n].rows <= budget:
        rows += left[n].rows
        n += 1
    return n


class TaskSizer:
    """The units not handed out yet and the rate measured so far; hands out the next task."""

    def __init__(self, units: Iterable[WorkUnit], slots: int, max_per_task: int = MAX_FRAGMENTS_PER_TASK):
        units = list(units)
        self._left = deque(sorted(units, key=lambda u: -u.rows))  # stable: plan order among equals
        self._rows_left = sum(u.rows for u in units)
        self._rows_in_flight = 0
        self.slots, self.max_per_task = slots, max_per_task
        self._seconds, self._rows = 0.0, 0

    def __bool__(self) -> bool:
        return bool(self._left)

    def observe(self, rows: int, seconds: float) -> None:
        """A fragment handed out is reported: the rows it computed and the seconds that took."""
        self._rows_in_flight -= rows
        if rows > 0:
            self._rows += rows
            self._seconds += seconds

    @property
    def seconds_per_row(self) -> Optional[float]:
        return self._seconds / self._rows if self._rows else None

    def next_task(self) -> list[WorkUnit]:
        """The next task's units, largest first (empty when all are handed out): a task
        computes them in that order, so one slot computes the whole table largest first."""
        n = next_task_size(self._left, self.slots, self.seconds_per_row, rows_left=self._rows_left,
                           rows_in_flight=self._rows_in_flight, max_per_task=self.max_per_task)
        task = [self._left.popleft() for _ in range(n)]
        rows = sum(u.rows for u in task)
        self._rows_left -= rows
        self._rows_in_flight += rows
        return task
