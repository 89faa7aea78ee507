"""How many fragments each Ray task gets: largest fragments first, a shrinking share of the work
left so that the slots end together, grouped up to the cap while fragments are cheap next to
Ray's per-task cost, and one fragment a task until anything is measured.

The makespans below come from a deterministic simulation of slots running the tasks the sizer
hands out, the way run_units does (at most `slots` tasks in flight until a fragment is measured,
QUEUE_PER_SLOT x slots after), with a fixed cost per task: no clock is read."""
import heapq
import math
from collections import deque

import pytest

from geneva_operator.engine.execute import QUEUE_PER_SLOT
from geneva_operator.engine.plan import WorkUnit
from geneva_operator.engine.sizing import MAX_FRAGMENTS_PER_TASK, MIN_TASK_SECONDS, TaskSizer, next_task_size

pytestmark = pytest.mark.engine

TASK_COST = 0.006  # Ray's lease, dispatch and report per task, measured on a 2-core box


def units(*rows):
    return [WorkUnit(i, n, n, None, None, b"", f"{n}:f{i}") for i, n in enumerate(rows)]


def ids(tasks):
    return [[u.fragment_id for u in t] for t in tasks]


def simulate(rows, slots, seconds_per_row, first_seconds_per_row=None):
    """(makespan, tasks in the order handed out): slots take queued tasks in order as they
    free up; each fragment takes rows x seconds_per_row (the first one reported measures as
    rows x first_seconds_per_row, e.g. a udf's slow first call), each task TASK_COST more, and
    a task reports its fragments when it ends."""
    sizer = TaskSizer(units(*rows), slots)
    queued, running, idle, handed = deque(), [], list(range(slots)), []
    now, measured = 0.0, False
    while True:
        room = QUEUE_PER_SLOT * slots if sizer.seconds_per_row is not None else slots
        while sizer and len(queued) + len(running) < room:
            handed.append(sizer.next_task())
            queued.append(handed[-1])
        while idle and queued:
            task = queued.popleft()
            end = now + TASK_COST + sum(u.rows for u in task) * seconds_per_row
            heapq.heappush(running, (end, len(handed), idle.pop(), task))
        if not running:
            return now, handed
        now, _, slot, task = heapq.heappop(running)
        idle.append(slot)
        for u in task:
            rate = first_seconds_per_row if first_seconds_per_row and not measured else seconds_per_row
            sizer.observe(u.rows, u.rows * rate)
            measured = True


def ideal(rows, slots, seconds_per_row):
    return sum(rows) * seconds_per_row / slots


# 16 fragments, the first 10x the rows of each other (bench/scale_bench.py --sections skew): a
# heavy udf at 3 us a row makes the small ones 0.12 s and the big one 1.2 s.
SKEWED = [400_000] + [40_000] * 15
HEAVY = 3e-6
TRIVIAL = 6e-8  # 1M rows in 16 fragments: ~4 ms a fragment, less than a task's fixed cost


def test_a_skewed_table_on_a_slow_udf_ends_within_15_percent_of_the_ideal():
    # (2 tasks of at most 8 fragments, rows balanced, end at 17 small fragments' work against 12.5: 1.36x)
    makespan, _ = simulate(SKEWED, 2, HEAVY)
    assert makespan <= 1.15 * ideal(SKEWED, 2, HEAVY)


def test_the_largest_fragment_goes_first_and_alone_and_the_last_tasks_are_single_fragments():
    _, tasks = simulate(SKEWED, 2, HEAVY)
    assert ids(tasks)[0] == [0]
    sizes = [len(t) for t in tasks]
    assert sizes[:2] == [1, 1]  # one probe a slot: nothing is measured yet
    assert max(sizes) > 1  # the small ones are grouped while much is left
    assert sizes[2:] == sorted(sizes[2:], reverse=True)  # and less and less so
    assert sizes[-3:] == [1, 1, 1]


def test_equal_fragments_on_a_slow_udf_end_together():
    rows = [62_500] * 16
    makespan, tasks = simulate(rows, 2, HEAVY)
    assert makespan <= 1.05 * ideal(rows, 2, HEAVY)
    assert len(tasks) < 16  # still grouped early on: not one task a fragment


def test_a_cheap_udf_keeps_tasks_of_up_to_eight_fragments():
    # 1024 fragments of ~1k rows, ~1 ms each: the floor on a task's work is not reached before the cap
    rows = [977] * 1024
    makespan, tasks = simulate(rows, 2, 1e-6)
    assert all(len(t) == MAX_FRAGMENTS_PER_TASK for t in tasks[2:-1])
    assert len(tasks) <= math.ceil(1024 / MAX_FRAGMENTS_PER_TASK) + 2  # the two probes of one fragment
    assert len(tasks) * TASK_COST / 1024 < 0.001  # well under the 5 ms per fragment of fixed cost


def test_a_cheap_udf_on_few_fragments_pays_for_one_probe_task_a_slot_then_deals_one_task_a_slot():
    rows = [62_500] * 16
    _, tasks = simulate(rows, 2, TRIVIAL)
    assert [len(t) for t in tasks] == [1, 1, 7, 7]


def test_skew_does_not_split_a_cheap_udf_into_single_fragments():
    _, tasks = simulate(SKEWED, 2, TRIVIAL)
    assert len(tasks) <= 4


def test_a_single_fragment_is_one_task():
    assert ids(simulate([1000], 4, HEAVY)[1]) == [[0]]


def test_more_slots_than_fragments_start_every_fragment_at_once_alone():
    makespan, tasks = simulate([100_000, 50_000, 50_000], 8, HEAVY)
    assert sorted(ids(tasks)) == [[0], [1], [2]]
    assert makespan == pytest.approx(TASK_COST + 100_000 * HEAVY)


def test_a_slow_first_fragment_makes_tasks_smaller_never_a_straggler():
    # the first fragment reported carries the udf's model load: the rate looks 100x what it is
    makespan, tasks = simulate(SKEWED, 2, HEAVY, first_seconds_per_row=100 * HEAVY)
    assert makespan <= 1.15 * ideal(SKEWED, 2, HEAVY)


def test_every_unit_is_handed_out_once_largest_first():
    rows = [(i * 7919) % 1000 + 1 for i in range(137)]
    for rate in (None, TRIVIAL, HEAVY):
        sizer = TaskSizer(units(*rows), 3)
        if rate is not None:
            sizer.observe(1000, 1000 * rate)
        tasks = []
        while sizer:
            tasks.append(sizer.next_task())
        assert sorted(i for t in ids(tasks) for i in t) == list(range(137))
        assert all(1 <= len(t) <= MAX_FRAGMENTS_PER_TASK for t in tasks)
        # one after another, the tasks hand out the fragments by size, ties in plan order
        assert [u.fragment_id for t in tasks for u in t] == sorted(range(137), key=lambda i: (-rows[i], i))
        assert sizer.next_task() == []


def test_nothing_measured_yet_means_one_fragment():
    assert next_task_size(units(10, 10, 10), slots=2, seconds_per_row=None) == 1


def test_a_task_takes_at_most_its_share_of_the_rows_left_once_that_beats_the_floor():
    left = units(*[40_000] * 14)  # 560k rows left, 2 slots: a share of 140k rows
    assert next_task_size(left, slots=2, seconds_per_row=HEAVY) == 3
    assert next_task_size(left, slots=2, seconds_per_row=HEAVY, max_per_task=2) == 2
    # a fragment larger than the share still goes, alone
    assert next_task_size(units(400_000, *[40_000] * 14), slots=2, seconds_per_row=HEAVY) == 1


def test_the_floor_groups_fragments_up_to_min_task_seconds_of_work():
    rate = MIN_TASK_SECONDS / 10_000  # 10k rows make the floor
    left = units(*[2_000] * 100)  # the share (50k rows) is larger: it decides
    assert next_task_size(left, slots=2, seconds_per_row=rate) == MAX_FRAGMENTS_PER_TASK
    left = units(*[2_000] * 16)  # a share of 8k rows is smaller than the floor: 5 fragments make 10k
    assert next_task_size(left, slots=2, seconds_per_row=rate) == 5
    assert next_task_size(left, slots=2, seconds_per_row=0.0) == MAX_FRAGMENTS_PER_TASK  # too fast to time


def test_the_floor_asks_no_more_than_a_slots_equal_part_of_the_work_not_reported():
    rate = MIN_TASK_SECONDS / 100_000  # the floor: 100k rows, far more than is left
    left = units(*[2_000] * 12)  # 24k rows left: a share of 6k rows (3 fragments)
    assert next_task_size(left, slots=2, seconds_per_row=rate) == 6  # half of the 24k
    assert next_task_size(left, slots=2, seconds_per_row=rate, rows_in_flight=8_000) == 8  # half of 32k


def test_a_fragment_with_no_rows_measures_nothing():
    sizer = TaskSizer(units(10, 10), 2)
    sizer.observe(0, 0.0)
    assert sizer.seconds_per_row is None
    sizer.observe(100, 0.5)
    sizer.observe(300, 0.5)
    assert sizer.seconds_per_row == pytest.approx(1.0 / 400)
