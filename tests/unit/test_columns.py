"""One backfill at a time per table column: who waits for whom."""
from __future__ import annotations

from geneva_operator.columns import Claim, blocker, column_key


def claim(name: str, created: str, phase, starting: bool = False, ns: str = "ml") -> Claim:
    return Claim(ns, name, f"uid-{ns}-{name}", created, phase, starting)


def test_a_backfill_about_to_start_waits_for_one_that_holds_the_column():
    running = claim("a", "2026-01-01T00:00:05Z", "Running")  # younger, but already running
    me = claim("b", "2026-01-01T00:00:00Z", "Pending")
    assert blocker(me, [running, me]) == running
    assert blocker(me, [claim("a", "2026-01-01T00:00:05Z", "Provisioning"), me]).name == "a"


def test_finished_failed_and_suspended_backfills_do_not_hold_the_column():
    me = claim("b", "2026-01-01T00:00:09Z", "Pending")
    others = [claim("s", "1", "Succeeded"), claim("f", "2", "Failed"), claim("z", "3", "Suspended")]
    assert blocker(me, [*others, me]) is None


def test_among_backfills_applied_together_the_oldest_goes_first_and_both_agree():
    old, new = claim("x", "2026-01-01T00:00:00Z", None), claim("y", "2026-01-01T00:00:01Z", "Pending")
    assert blocker(old, [old, new]) is None and blocker(new, [old, new]) == old
    same_time = [claim("p", "2026-01-01T00:00:00Z", "Pending"), claim("q", "2026-01-01T00:00:00Z", "Pending")]
    assert [blocker(c, same_time) for c in same_time] == [None, same_time[0]]  # then by namespace/name


def test_one_that_holds_the_column_never_waits():
    me = claim("a", "2026-01-01T00:00:05Z", "Running")
    assert blocker(me, [claim("b", "2026-01-01T00:00:00Z", "Running"), me]) is None


def test_a_finished_or_resumed_backfill_starting_a_new_run_queues_like_a_pending_one():
    holder = claim("a", "2026-01-01T00:00:00Z", "Running")
    rerun = claim("b", "2026-01-01T00:00:01Z", "Succeeded", starting=True)
    resumed = claim("c", "2026-01-01T00:00:02Z", "Suspended", starting=True)
    assert blocker(rerun, [holder, rerun]) == holder and blocker(resumed, [resumed, holder]) == holder
    assert blocker(resumed, [rerun, resumed]) == rerun  # an older starter goes first


def test_the_column_key_ignores_a_trailing_slash_of_the_uri():
    assert column_key("s3://b/db/", "t", "c") == column_key("s3://b/db", "t", "c")
    assert column_key("s3://b/db", "t", "c") != column_key("s3://b/db", "t", "d")
