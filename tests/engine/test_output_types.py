"""Every output type the README lists, row by row, through the runs users make: one filter
then another, an append then mode Missing, a compaction and an append then mode Missing, a
failure mid-run then a resume. The udf logs every id it is called on, so each run is
checked for computing exactly the rows it needed, no more, no fewer, and the column for
holding exactly the values of the rows computed."""
import numpy as np
import pyarrow as pa
import pytest

import lance
import lancedb
from conftest import make_table, spec_for
from geneva_operator.engine import UdfError, run_backfill
from sample_udfs import TYPED, typed_value

pytestmark = pytest.mark.engine

SIZES = [1500, 1200, 1800, 1500]  # 6,000 rows in fragments of unequal size
TOTAL = sum(SIZES)
KINDS = list(TYPED)


def rows(start: int, n: int) -> pa.Table:
    return pa.table({"id": pa.array(range(start, start + n), pa.int64())})


class Calls:
    """The ids the udf was called on since the last look, in one sorted list."""

    def __init__(self, path):
        self.path, self.seen = path, 0

    def new(self) -> list[int]:
        data = self.path.read_bytes() if self.path.exists() else b""
        ids, self.seen = np.frombuffer(data[self.seen:], dtype="<i8"), len(data)
        return sorted(ids.tolist())


@pytest.fixture
def setup(db, tmp_path, ray_session):
    starts = np.cumsum([0] + SIZES[:-1]).tolist()
    make_table(db, "t", [rows(s, n) for s, n in zip(starts, SIZES)])

    def spec(kind, **extra):
        udf = {"initArgs": {"kind": kind, "log": str(tmp_path / "calls.bin"), **extra.pop("init", {})}, "batchSize": 500}
        return spec_for(db, "t", "c", "sample_udfs:Typed", ["id"], TYPED[kind][0], udf=udf, **extra)

    return db, spec, Calls(tmp_path / "calls.bin")


def assert_column(db, kind, computed):
    """Rows in `computed` hold the udf's value, every other row is null."""
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["id", "c"]).sort_by("id")
    ids = t.column("id").to_pylist()
    want = pa.array([typed_value(kind, i) if i in computed else None for i in ids], t.schema.field("c").type)
    bad = [(i, got, exp) for i, got, exp in zip(ids, t.column("c").to_pylist(), want.to_pylist()) if got != exp]
    assert not bad, f"{len(bad)} rows differ, first {bad[:3]}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_second_filter_keeps_the_rows_of_the_first_and_computes_only_its_own(setup, kind):
    db, spec, calls = setup
    evens, odds = list(range(0, TOTAL, 2)), list(range(1, TOTAL, 2))
    first = run_backfill(spec(kind, where="id % 2 = 0"))
    assert calls.new() == evens and first.rows_computed == len(evens)
    assert_column(db, kind, set(evens))
    second = run_backfill(spec(kind, where="id % 2 = 1"))
    assert calls.new() == odds and second.rows_computed == len(odds)
    assert_column(db, kind, set(range(TOTAL)))
    assert run_backfill(spec(kind)).rows_computed == 0 and calls.new() == []


@pytest.mark.parametrize("kind", KINDS)
def test_after_an_append_mode_missing_computes_only_the_new_rows(setup, kind):
    db, spec, calls = setup
    run_backfill(spec(kind))
    assert calls.new() == list(range(TOTAL))
    lancedb.connect(db).open_table("t").add(rows(TOTAL, 1500))
    again = run_backfill(spec(kind))
    assert calls.new() == list(range(TOTAL, TOTAL + 1500)) and again.rows_computed == 1500
    assert_column(db, kind, set(range(TOTAL + 1500)))


@pytest.mark.parametrize("kind", KINDS)
def test_after_a_compaction_and_an_append_mode_missing_computes_only_what_no_run_did(setup, kind):
    db, spec, calls = setup
    run_backfill(spec(kind, where="id % 3 != 0"))
    table = lancedb.connect(db).open_table("t")
    table.delete("id % 10 = 1")  # compaction drops deleted rows: the rest shift in their new fragments
    lance.dataset(f"{db}/t.lance").optimize.compact_files()
    assert len(lance.dataset(f"{db}/t.lance").get_fragments()) == 1
    table.add(rows(TOTAL, 1500))
    assert calls.new() == [i for i in range(TOTAL) if i % 3]
    again = run_backfill(spec(kind))
    alive = [i for i in range(TOTAL + 1500) if i % 10 != 1 or i >= TOTAL]
    assert calls.new() == [i for i in alive if i % 3 == 0 or i >= TOTAL]
    assert_column(db, kind, set(alive))
    # the carried checkpoints were folded: the next run reads no history and computes nothing
    assert run_backfill(spec(kind)).rows_computed == 0 and calls.new() == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_run_failing_mid_way_resumes_with_only_the_rows_it_had_not_finished(setup, tmp_path, kind):
    db, spec, calls = setup
    healed = tmp_path / "healed"
    # One slot takes the fragments largest first (2, 0, 3, 1) and fails in the third, fragment 3 (ids 4500..5999);
    # each fragment is its own commit.
    failing = spec(kind, commitEvery=1, concurrency=1, init={"fail_from": 4500, "fail_to": 4501, "healed": str(healed)})
    with pytest.raises(UdfError, match="ids 4500..4501 are not ready") as e:
        run_backfill(failing)
    done = [*range(0, 1500), *range(2700, 4500)]  # fragments 0 and 2
    assert f"2 of 4 fragments ({len(done)} of {TOTAL} rows) were committed" in str(e.value)
    assert calls.new() == done
    assert_column(db, kind, set(done))  # the finished fragments are committed, the rest untouched
    healed.touch()
    resumed = run_backfill(failing)
    assert calls.new() == sorted(set(range(TOTAL)) - set(done)) and resumed.rows_computed == TOTAL - len(done)
    assert_column(db, kind, set(range(TOTAL)))
    assert run_backfill(failing).rows_computed == 0 and calls.new() == []
