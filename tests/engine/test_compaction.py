"""Compaction keeps rows and values, so it keeps which rows are done: before a run, between
runs, chained, and in the middle of a run, where progress still never passes its total."""
import threading
import time
from datetime import timedelta

import lance
import lancedb
import pyarrow as pa
import pytest
from lance.commit import CommitConflictError

from conftest import make_tagged_table, spec_for
from geneva_operator.engine import run_backfill
from test_resume import logged

pytestmark = pytest.mark.engine

FRAGS = [500, 300, 500, 700, 500, 400, 500, 600]


def spec(db, log, **extra):
    udf = {"initArgs": {"log": str(log), **extra.pop("init", {})}, "batchSize": 250}
    return spec_for(db, "t", "y", "sample_udfs:Logged", ["x", "frag"], "int64", udf=udf, **extra)


def exact(db):
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", "y"]).to_pydict()
    return t["y"] == [None if x is None else 2 * x for x in t["x"]]


def append(db, start, n, tag):
    lancedb.connect(db).open_table("t").add(pa.table({
        "id": pa.array(range(start, start + n), pa.int64()), "x": pa.array(range(start, start + n), pa.int64()),
        "frag": pa.array([tag] * n, pa.int64())}))


def compact(db):
    for _ in range(20):  # a commit of the running backfill may win the race: compact again on top of it
        try:
            return lance.dataset(f"{db}/t.lance").optimize.compact_files()
        except CommitConflictError:
            time.sleep(0.05)
    raise AssertionError("compaction lost every race")


def test_lancedb_optimize_twice_with_appends_between_keeps_every_computed_row(db, tmp_path, ray_session):
    total = make_tagged_table(db, FRAGS, null_every=9)
    log = tmp_path / "calls.log"
    assert run_backfill(spec(db, log)).rows_computed == total
    table = lancedb.connect(db).open_table("t")
    append(db, total, 300, 100)
    table.optimize()  # compaction (and index upkeep, and cleanup of versions older than a week)
    first = {f.fragment_id for f in lance.dataset(f"{db}/t.lance").get_fragments()}
    append(db, total + 300, 200, 101)
    table.optimize()  # compacts what the first one wrote
    assert not first & {f.fragment_id for f in lance.dataset(f"{db}/t.lance").get_fragments()}
    again = run_backfill(spec(db, log))
    assert again.rows_computed == 500 and logged(log)[100] == 300 and logged(log)[101] == 200
    assert exact(db) and run_backfill(spec(db, log)).rows_computed == 0


@pytest.mark.parametrize("deleted", [False, True])
def test_a_compaction_whose_history_was_cleaned_up_recomputes_only_what_it_cannot_align(db, tmp_path, ray_session, deleted):
    total = make_tagged_table(db, FRAGS, null_every=9)
    log = tmp_path / "calls.log"
    run_backfill(spec(db, log))
    table = lancedb.connect(db).open_table("t")
    if deleted:
        table.delete("id % 10 = 3")
    # Every older version, and with them the deletion files, removed right away.
    table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)
    again = run_backfill(spec(db, log))
    alive = lance.dataset(f"{db}/t.lance").count_rows()
    # Without deletions the rewrite alone says where every row went; with them, which rows were
    # dropped is gone with the old versions: the rows are computed again, never guessed.
    assert again.rows_computed == (alive if deleted else 0) and alive == total - (total // 10 if deleted else 0)
    assert exact(db)


class Recording:
    def __init__(self):
        self.updates = []

    def update(self, p):
        self.updates.append(p)

    def close(self):
        pass


def test_a_compaction_during_a_run_costs_only_the_uncommitted_fragments_and_progress_stays_within_total(db, tmp_path, ray_session):
    total = make_tagged_table(db, FRAGS, null_every=9)
    log = tmp_path / "calls.log"
    s = spec(db, log, commitEvery=1, concurrency=1, init={"delay": 0.3})
    sink, box = Recording(), {}
    v0 = lance.dataset(f"{db}/t.lance").version
    th = threading.Thread(target=lambda: box.update(result=run_backfill(s, progress=sink)))
    th.start()
    deadline = time.monotonic() + 120
    while lance.dataset(f"{db}/t.lance").version < v0 + 2 and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.05)
    compact(db)
    th.join(180)
    r = box["result"]
    assert exact(db)
    assert len(lance.dataset(f"{db}/t.lance").get_fragments()) < len(FRAGS)  # the run really met the compaction
    assert all(u.rows_done <= u.rows_total and u.fragments_done <= u.fragments_total for u in sink.updates), \
        [(u.rows_done, u.rows_total, u.fragments_done, u.fragments_total) for u in sink.updates if u.rows_done > u.rows_total]
    assert (r.rows_done, r.fragments_done) == (r.rows_total, r.fragments_total)
    # Every row computed once for the column, plus the outputs the compaction made stale:
    # rows committed before it are not computed again.
    seen = sum(logged(log).values())
    assert seen == r.rows_computed == total + r.rows_discarded and r.rows_done == total, (logged(log), r)
    assert run_backfill(s).rows_computed == 0


def test_a_fragment_deleted_whole_leaves_the_state_on_the_next_run_even_one_with_nothing_to_do(db, tmp_path, ray_session,
                                                                                                 monkeypatch):
    from geneva_operator.engine import history
    from geneva_operator.engine.checkpoint import CheckpointStore
    from geneva_operator.engine.table import TableLocation

    make_tagged_table(db, FRAGS, null_every=9)
    log = tmp_path / "calls.log"
    run_backfill(spec(db, log))
    lancedb.connect(db).open_table("t").delete("frag = 0")  # Lance drops the emptied fragment
    walks = []
    monkeypatch.setattr(history, "_rewrites_of", lambda ds, wanted: walks.append(wanted) or [])
    assert run_backfill(spec(db, log)).rows_computed == 0
    assert run_backfill(spec(db, log)).rows_computed == 0
    # Its checkpoint was looked for in the history once, then dropped from the state.
    assert walks == [{0}]
    assert sorted(CheckpointStore(TableLocation(f"{db}/t.lance"), "y").read_state()) == list(range(1, len(FRAGS)))
