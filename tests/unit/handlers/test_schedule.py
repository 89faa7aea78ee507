"""The operator's schedule: when each resource is reconciled next, and who wakes for it."""
from __future__ import annotations

import asyncio

from geneva_operator.handlers.schedule import Schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_reconcile_sets_the_next_time_and_news_only_brings_it_forward():
    clock = Clock()
    s = Schedule(clock)
    assert s.due_in("a") is None and len(s) == 0
    s.at("a", 10)
    assert s.due_in("a") == 10
    s.sooner("a", 2)
    assert s.due_in("a") == 2
    s.sooner("a", 5)  # later than already due: no change
    assert s.due_in("a") == 2
    s.at("a", 30)  # a reconcile decides anew, later or not
    assert s.due_in("a") == 30
    clock.now += 31
    assert s.due_in("a") == -1
    s.settle("a")
    assert s.due_in("a") is None and len(s) == 0
    s.drop("a")
    s.settle("a")  # no entry: nothing to settle, none made
    assert s.due_in("a") is None and len(s) == 0


def test_news_while_a_reconcile_runs_applies_after_it_even_if_that_reconcile_sets_a_later_time():
    clock = Clock()
    s = Schedule(clock)
    s.at("a", 10)
    with s.running("a"):
        s.sooner("a", 0)  # the result line arrives while the reconcile reads Ray
        s.at("a", 10)  # the reconcile then sets the next poll
        assert s.due_in("a") == 10
    assert s.due_in("a") == 0
    with s.running("a"):
        s.at("a", 10)  # no news meanwhile: its time stands
    assert s.due_in("a") == 10


def test_nested_reconciles_keep_news_until_the_last_ends():
    s = Schedule(Clock())
    s.at("a", 10)
    with s.running("a"):
        with s.running("a"):
            s.sooner("a", 0)
        s.at("a", 10)
    assert s.due_in("a") == 0


def test_a_resource_without_a_time_is_due_at_once():
    async def main() -> None:
        s = Schedule()
        stop = asyncio.get_running_loop().create_future()
        assert await asyncio.wait_for(s.until_due("new", stop), timeout=5) is True

    asyncio.run(main())


def test_a_sleeper_wakes_when_news_brings_its_time_forward_and_not_before():
    async def main() -> None:
        s = Schedule()
        s.at("a", 3600)
        stop = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(s.until_due("a", stop))
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        s.at("a", 1800)  # moved, still far: sleeps on
        await asyncio.sleep(0.05)
        assert not sleeper.done()
        s.sooner("a", 0)
        assert await asyncio.wait_for(sleeper, timeout=5) is True

    asyncio.run(main())


def test_a_sleeper_wakes_at_its_time():
    async def main() -> None:
        s = Schedule()
        s.at("a", 0.05)
        stop = asyncio.get_running_loop().create_future()
        assert await asyncio.wait_for(s.until_due("a", stop), timeout=5) is True
        assert s.due_in("a") <= 0

    asyncio.run(main())


def test_a_stopped_sleeper_returns_false_and_leaves_the_stop_flag_alone():
    async def main() -> None:
        s = Schedule()
        s.at("a", 3600)
        stop = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(s.until_due("a", stop))
        await asyncio.sleep(0.01)
        stop.set_result(None)
        assert await asyncio.wait_for(sleeper, timeout=5) is False
        assert await s.until_due("a", stop) is False  # stopped stays stopped

    asyncio.run(main())


def test_a_settled_sleeper_sleeps_until_a_time_is_set_again():
    # Its own reconcile settled it; kopf stops the daemon once the watch shows the settled
    # status. Until then it must not spin, and a spec change meanwhile must still wake it.
    async def main() -> None:
        s = Schedule()
        s.at("a", 0.01)
        stop = asyncio.get_running_loop().create_future()
        sleeper = asyncio.ensure_future(s.until_due("a", stop))
        s.settle("a")
        s.sooner("b", 0)  # another resource's news does not wake this one
        await asyncio.sleep(0.01)
        assert not sleeper.done()
        s.at("a", 0)
        assert await asyncio.wait_for(sleeper, timeout=5) is True

    asyncio.run(main())
