"""Other writers during a run: their work survives and the run still ends exact."""
import threading
import time

import lance
import lancedb
import pyarrow as pa
import pytest

from conftest import make_tagged_table, spec_for
from geneva_operator.engine import run_backfill

pytestmark = pytest.mark.engine

FRAGS = [400, 250, 600, 300, 500]


def table(db):
    return make_tagged_table(db, FRAGS, null_every=13)


def run_in_thread(spec):
    box = {}

    def target():
        try:
            box["result"] = run_backfill(spec)
        except BaseException as e:  # noqa: BLE001 - surfaced by the test
            box["error"] = e

    th = threading.Thread(target=target)
    th.start()
    return th, box


def test_rows_appended_during_a_run_survive_and_are_computed_by_the_next_missing_run(db, tmp_path, ray_session):
    total = table(db)
    spec = spec_for(db, "t", "y", "sample_udfs:Logged", ["x", "frag"], "int64", commitEvery=1, concurrency=1,
                    udf={"initArgs": {"log": str(tmp_path / "calls.log"), "delay": 0.3}, "batchSize": 200})
    v0 = lance.dataset(f"{db}/t.lance").version
    th, box = run_in_thread(spec)
    deadline = time.monotonic() + 120
    while lance.dataset(f"{db}/t.lance").version < v0 + 2 and time.monotonic() < deadline and th.is_alive():
        time.sleep(0.05)
    appended = pa.table({"id": pa.array(range(total, total + 120), pa.int64()),
                         "x": pa.array(range(total, total + 120), pa.int64()), "frag": pa.array([99] * 120, pa.int64())})
    lancedb.connect(db).open_table("t").add(appended)  # written while the backfill is between commits
    th.join(120)
    assert "error" not in box, box.get("error")
    assert box["result"].commits >= 2  # the append landed between the run's commits, not after them

    t = lance.dataset(f"{db}/t.lance").to_table(columns=["id", "x", "y"]).sort_by("id").to_pydict()
    assert len(t["id"]) == total + 120
    # the run computed the version it pinned; appended rows stay null until the next Missing run
    assert t["y"] == [(None if x is None else 2 * x) if i < total else None for i, x in zip(t["id"], t["x"])]
    again = run_backfill(spec)
    assert again.rows_computed == 120
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else 2 * x for x in t["x"]]


def test_two_columns_backfilled_at_once_both_end_exact(db, ray_session):
    table(db)
    a = spec_for(db, "t", "plus", "sample_udfs:plus_one", ["x"], "int64", commitEvery=1)
    b = spec_for(db, "t", "cnt", "sample_udfs:Counter", ["id"], "int64", commitEvery=1,
                 udf={"initArgs": {"log": "/dev/null"}})
    (ta, ra), (tb, rb) = run_in_thread(a), run_in_thread(b)
    ta.join(180), tb.join(180)
    assert "error" not in ra and "error" not in rb, (ra.get("error"), rb.get("error"))
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["id", "x", "plus", "cnt"]).to_pydict()
    assert t["plus"] == [None if x is None else x + 1 for x in t["x"]]
    assert t["cnt"] == [i + 10 for i in t["id"]]
    assert ra["result"].commits == rb["result"].commits == len(FRAGS)
