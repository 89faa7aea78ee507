"""Tasks of several fragments: how fragments are dealt into Ray tasks, how a task reports them,
and that checkpoints, resume and failures stay per fragment."""
import lance
import pyarrow as pa
import pytest

from conftest import make_table, make_tagged_table, spec_for
from geneva_operator.engine import UdfError, execute, run_backfill
from geneva_operator.engine.manifest import parse_spec
from geneva_operator.engine.plan import WorkUnit, load_checkpoints, plan, run_identity
from geneva_operator.engine.table import TableLocation

pytestmark = pytest.mark.engine


def units(*rows):
    return [WorkUnit(i, n, n, None, None, b"", f"{n}:f{i}") for i, n in enumerate(rows)]


def ids(groups):
    return [[u.fragment_id for u in g] for g in groups]


def test_every_unit_lands_in_exactly_one_task_in_plan_order():
    us = units(*range(100, 137))
    groups = execute.task_groups(us, slots=3, max_per_task=8)
    assert sorted(i for g in ids(groups) for i in g) == list(range(37))
    assert all(g == sorted(g) for g in ids(groups))


def test_one_task_per_slot_until_tasks_would_exceed_the_cap():
    assert len(execute.task_groups(units(*[10] * 16), slots=2, max_per_task=8)) == 2
    assert len(execute.task_groups(units(*[10] * 64), slots=2, max_per_task=8)) == 8
    assert len(execute.task_groups(units(*[10] * 16), slots=32, max_per_task=8)) == 16  # never an empty task
    assert all(len(g) <= 8 for g in execute.task_groups(units(*range(1, 100)), slots=2, max_per_task=8))
    assert execute.task_groups([], slots=4) == []


def test_rows_are_spread_evenly_over_the_tasks():
    # one big fragment and many small ones: the big one gets a task to itself
    groups = execute.task_groups(units(900, *[100] * 9), slots=2, max_per_task=10)
    assert sorted(sum(u.rows for u in g) for g in groups) == [900, 900]


def _context(db, column="y"):
    spec = parse_spec(spec_for(db, "t", column, "sample_udfs:plus_one", ["x"], "int64"))
    loc = TableLocation.from_ref(spec.table)
    p = plan(spec, loc, loc.open(), run_id="r")
    ctx = execute.TaskContext(loc, p.read_version, column, False, spec.udf, p.key, "r", run_identity(spec, p.key))
    return ctx, p.units


def test_a_task_reports_each_slow_fragment_at_once_and_fast_ones_together(db):
    make_tagged_table(db, [30, 40, 50], null_every=7)
    ctx, us = _context(db)
    assert [[r.fragment_id for r in rep] for rep in execute.compute_fragments(ctx, us, report_every=0)] == [[0], [1], [2]]
    assert [[r.fragment_id for r in rep] for rep in execute.compute_fragments(ctx, us, report_every=60)] == [[0, 1, 2]]


def test_a_failing_fragment_still_reports_the_fragments_finished_before_it(db):
    make_tagged_table(db, [30, 40, 50], null_every=7)
    ctx, us = _context(db)
    broken = WorkUnit(99, 10, 10, None, None, b"", "10:gone")  # no such fragment
    reports = execute.compute_fragments(ctx, [us[0], us[1], broken, us[2]], report_every=60)
    assert [r.fragment_id for r in next(reports)] == [0, 1]
    with pytest.raises(Exception):
        next(reports)


def test_a_failed_multi_fragment_task_leaves_the_table_and_resume_recomputes_only_unfinished_fragments(db, tmp_path, ray_session):
    sizes = [300, 200, 400, 100, 300, 200]
    make_tagged_table(db, sizes, null_every=9)
    log, healed = tmp_path / "calls.log", tmp_path / "healed"
    # one slot: all six fragments in one task; fragment 4 fails until healed; nothing commits before the end
    spec = spec_for(db, "t", "y", "sample_udfs:FailOnTagUntil", ["x", "frag"], "int64", concurrency=1, commitEvery=100,
                    udf={"initArgs": {"log": str(log), "tag": 4, "healed": str(healed)}, "batchSize": 100})
    v0 = lance.dataset(f"{db}/t.lance").version
    with pytest.raises(UdfError, match="fragment 4 is not ready"):
        run_backfill(spec)
    ds = lance.dataset(f"{db}/t.lance")
    assert ds.version == v0 and "y" not in ds.schema.names  # unchanged: no group was committed
    loc = TableLocation.from_ref(parse_spec(spec).table)
    assert sorted(r.fragment_id for r in load_checkpoints(loc, "y").records.values()) == [0, 1, 2, 3]

    healed.write_text("")
    before = log.read_text()
    r = run_backfill(spec)
    second = [line.split()[0] for line in log.read_text()[len(before):].splitlines()]
    assert set(second) == {"4", "5"}  # 0..3 were checkpointed by the failed task and only committed now
    assert r.rows_computed == sizes[4] + sizes[5] and r.rows_done == sum(sizes)
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else 2 * x for x in t["x"]]


def test_the_first_commit_creates_the_column_and_fills_it_at_once(db, ray_session):
    make_tagged_table(db, [100, 200, 300], null_every=5)
    v0 = lance.dataset(f"{db}/t.lance").version
    r = run_backfill(spec_for(db, "t", "y", "sample_udfs:plus_one", ["x"], "int64"))
    ds = lance.dataset(f"{db}/t.lance")
    assert r.commits == 1 and ds.version == v0 + 1
    assert ds.schema.field("y").nullable
    t = ds.to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else x + 1 for x in t["x"]]


def test_the_new_column_never_takes_the_field_id_of_a_dropped_column_still_in_data_files(db, ray_session):
    make_table(db, "t", [pa.table({"id": pa.array(range(s, s + 50), pa.int64()), "x": pa.array(range(s, s + 50), pa.int64()),
                                   "gone": pa.array(range(s * 100, s * 100 + 50), pa.int64())}) for s in (0, 50)])
    lance.dataset(f"{db}/t.lance").drop_columns(["gone"])  # its values stay in the files, under its field id
    v0 = lance.dataset(f"{db}/t.lance").version
    run_backfill(spec_for(db, "t", "y", "sample_udfs:plus_one", ["x"], "int64"))
    ds = lance.dataset(f"{db}/t.lance")
    assert ds.version == v0 + 2  # the column in a commit of its own (Lance picks its id), then the data
    assert ds.lance_schema.field("y").id() == 3
    t = ds.to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [x + 1 for x in t["x"]]
