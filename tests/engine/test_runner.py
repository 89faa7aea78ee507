"""run_backfill end to end on a real local Ray and real Lance tables on disk."""
import lance
import pyarrow as pa
import pytest

from conftest import make_table, spec_for
from geneva_operator.engine import BackfillError, SpecError, StorageError, UdfError, run_backfill

pytestmark = pytest.mark.engine

SIZES = [(0, 1000), (1000, 1037), (1037, 3500)]  # fragments of unequal size


def rows(start, end):
    ids = list(range(start, end))
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "s": [None if i % 7 == 0 else "w" * (i % 13) + ("é" if i % 3 else "") for i in ids],
        "a": pa.array([None if i % 11 == 0 else i * 3 for i in ids], pa.int64()),
        "lang": ["en" if i % 4 else "fr" for i in ids],
    })


@pytest.fixture
def table(db, ray_session):
    make_table(db, "t", [rows(s, e) for s, e in SIZES])
    return db


def read(db, *cols):
    return lance.dataset(f"{db}/t.lance").to_table(columns=list(cols)).sort_by("id").to_pydict()


def version(db):
    return lance.dataset(f"{db}/t.lance").version


def expected_len(s):
    return None if s is None else len(s)


def test_a_batch_udf_fills_every_row_exactly_and_commits_in_groups(table):
    v0 = version(table)
    r = run_backfill(spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32", commitEvery=2))
    got = read(table, "id", "s", "slen")
    assert got["slen"] == [expected_len(s) for s in got["s"]]
    assert (r.rows_done, r.rows_total, r.rows_computed, r.fragments_done, r.fragments_total) == (3500, 3500, 3500, 3, 3)
    # two commits of <= 2 fragments, the first of which also creates the column
    assert r.commits == 2 and r.committed_version == version(table) == v0 + 2
    assert lance.dataset(f"{table}/t.lance").schema.field("slen").nullable


def test_a_rerun_after_success_commits_nothing(table):
    spec = spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32")
    run_backfill(spec)
    v = version(table)
    r = run_backfill(spec)
    assert (r.rows_computed, r.commits, r.fragments_total) == (0, 0, 0)
    assert version(table) == v == r.committed_version


def test_where_then_missing_computes_only_the_rows_not_yet_computed(table):
    spec = spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32", where="lang = 'en'")
    first = run_backfill(spec)
    got = read(table, "id", "s", "lang", "slen")
    assert got["slen"] == [expected_len(s) if lang == "en" else None for s, lang in zip(got["s"], got["lang"])]
    assert first.rows_computed == got["lang"].count("en")

    spec.pop("where")
    second = run_backfill(spec)  # mode Missing is the default
    got = read(table, "id", "s", "lang", "slen")
    assert second.rows_computed == got["lang"].count("fr")
    assert got["slen"] == [expected_len(s) for s in got["s"]]


def test_a_new_udf_version_recomputes_selected_rows_and_keeps_the_rest(table):
    src1 = "import pyarrow.compute as pc\ndef f(a):\n    return pc.add(a, 1)\n"
    src2 = "import pyarrow.compute as pc\ndef f(a):\n    return pc.multiply(a, -1)\n"
    spec = spec_for(table, "t", "out", "ver_mod:f", ["a"], "int64", udf={"source": src1, "version": "1"})
    run_backfill(spec)
    spec = spec_for(table, "t", "out", "ver_mod:f", ["a"], "int64", udf={"source": src2, "version": "2"}, where="id < 1500")
    r = run_backfill(spec)
    got = read(table, "id", "a", "out")
    assert r.rows_computed == 1500
    assert got["out"] == [None if a is None else (-a if i < 1500 else a + 1) for i, a in zip(got["id"], got["a"])]
    # the rows outside the filter were computed by version 1 only: a version-2 run without filter does them now
    spec.pop("where")
    assert run_backfill(spec).rows_computed == 2000


def test_mode_all_recomputes_selected_rows_even_when_computed(table):
    spec = spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32")
    run_backfill(spec)
    v = version(table)
    r = run_backfill({**spec, "mode": "All", "where": "id < 100 OR id >= 3400"})
    assert r.rows_computed == 200 and r.fragments_done == 2 and version(table) == v + 1
    got = read(table, "s", "slen", "id")
    assert got["slen"] == [expected_len(s) for s in got["s"]]


def test_null_outputs_count_as_computed(table):
    spec = spec_for(table, "t", "d", "sample_udfs:scalar_describe", ["a", "s"], "string", udf={"kind": "Scalar"})
    first = run_backfill(spec)
    got = read(table, "id", "a", "s", "d")
    assert got["d"] == [None if a is None else f"{a}:{'-' if s is None else s.upper()}" for a, s in zip(got["a"], got["s"])]
    assert None in got["d"] and first.udf_calls == 3500  # Scalar: one call per row, nulls included
    assert run_backfill(spec).rows_computed == 0


def test_record_batch_udf_and_nested_output_types(table):
    run_backfill(spec_for(table, "t", "v", "sample_udfs:vec3", ["a"], "fixed_size_list<float32>[3]", udf={"batchSize": 333}))
    got = read(table, "id", "a", "v")
    assert got["v"] == [[float(a or 0)] * 3 for a in got["a"]]
    src = "import pyarrow.compute as pc\ndef f(b):\n    return pc.multiply(b.column('a'), b.column('id'))\n"
    run_backfill(spec_for(table, "t", "p", "rb:f", ["id", "a"], "int64", udf={"source": src, "kind": "RecordBatch"}))
    got = read(table, "id", "a", "p")
    assert got["p"] == [None if a is None else a * i for i, a in zip(got["id"], got["a"])]


def test_deleted_rows_stay_deleted_and_unselected_rows_keep_existing_values(table):
    import lancedb

    t = lancedb.connect(table).open_table("t")
    t.delete("id % 5 = 0")
    run_backfill(spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32", where="id < 2000"))
    run_backfill(spec_for(table, "t", "slen", "sample_udfs:length", ["s"], "int32", where="id >= 3000"))
    got = read(table, "id", "s", "slen")
    assert len(got["id"]) == 2800 and all(i % 5 for i in got["id"])
    assert got["slen"] == [expected_len(s) if (i < 2000 or i >= 3000) else None for i, s in zip(got["id"], got["s"])]


def test_a_class_udf_is_set_up_once_per_worker_process_not_per_batch(table, tmp_path):
    log = tmp_path / "instances.log"
    r = run_backfill(spec_for(table, "t", "c", "sample_udfs:Counter", ["a"], "int64",
                              udf={"initArgs": {"log": str(log)}, "batchSize": 100}))
    pids = log.read_text().split()
    assert r.udf_calls >= 35 and len(pids) == len(set(pids)) <= 3
    got = read(table, "id", "a", "c")
    assert got["c"] == [None if a is None else a + 10 for a in got["a"]]


# ------------------------------------------------------------------ bad input leaves the table as it was


def _unchanged(db, fn):
    before_version, before = version(db), lance.dataset(f"{db}/t.lance").to_table()
    with pytest.raises(BackfillError) as e:
        fn()
    after = lance.dataset(f"{db}/t.lance")
    assert after.version == before_version and after.to_table().equals(before)
    return e.value


@pytest.mark.parametrize("over,field,kind,match", [
    ({"udf": {"inputColumns": ["nope"]}}, "udf.inputColumns", SpecError, "column 'nope' is not in table"),
    ({"udf": {"function": "no_such_mod:f"}}, "udf.function", SpecError, "cannot import module 'no_such_mod'"),
    ({"udf": {"function": "sample_udfs:raises"}}, "udf.function", UdfError, "RuntimeError: model exploded"),
    ({"udf": {"function": "sample_udfs:wrong_type"}}, "udf.outputType", UdfError, "returned type string"),
    ({"udf": {"function": "sample_udfs:wrong_length"}}, "udf.function", UdfError, "values for .* input rows"),
    ({"udf": {"outputType": "int33"}}, "udf.outputType", SpecError, "unknown Arrow type"),
    ({"where": "id >>> 2"}, "where", SpecError, "invalid filter"),
    ({"column": "lang"}, "column", SpecError, "exists with type string"),
    ({"table": {"name": "nope"}}, "table.name", SpecError, "no table"),
    ({"table": {"uri": "/no/such/dir/db"}}, "table.uri", SpecError, "no database directory /no/such/dir/db"),
])
def test_bad_input_fails_naming_the_field_and_leaves_the_table_as_it_was(table, over, field, kind, match):
    spec = spec_for(table, "t", "out", "sample_udfs:plus_one", ["a"], "int64")
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) else v
    err = _unchanged(table, lambda: run_backfill(spec))
    assert isinstance(err, kind) and err.field == field
    assert pytest.importorskip("re").search(match, str(err)), str(err)


@pytest.mark.parametrize("udf,field,match", [
    ({"function": "no_such_mod:f"}, "udf.function", "cannot import module 'no_such_mod'"),
    ({"function": "sample_udfs:nope"}, "udf.function", "has no attribute 'nope'"),
    ({"function": "inline:f", "source": "def f(a:\n"}, "udf.source", "SyntaxError"),
    ({"function": "sample_udfs:plus_one", "initArgs": {"k": 1}}, "udf.initArgs", "initArgs apply only to classes"),
    ({"function": "sample_udfs:NotCallable"}, "udf.function", "has no __call__ method"),
])
def test_a_udf_that_cannot_be_loaded_fails_before_a_local_ray_is_started(db, monkeypatch, udf, field, match):
    from geneva_operator.engine import runner

    make_table(db, "t", [rows(s, e) for s, e in SIZES])
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(runner, "ensure_ray", lambda *a, **k: pytest.fail("Ray was started before the udf was checked"))
    spec = spec_for(db, "t", "out", "x:f", ["a"], "int64")
    spec["udf"] = {k: v for k, v in spec["udf"].items() if k != "function"} | udf
    err = _unchanged(db, lambda: run_backfill(spec))
    assert isinstance(err, SpecError) and err.field == field and match in str(err), str(err)


def test_unreachable_storage_is_a_storage_error(table):
    spec = spec_for("s3://bucket/db", "t", "out", "sample_udfs:plus_one", ["a"], "int64",
                    table={"storageOptions": {"aws_endpoint": "http://127.0.0.1:9", "allow_http": "true",
                                              "connect_timeout": "1s", "timeout": "2s", "client_max_retries": "0"}})
    with pytest.raises(StorageError) as e:
        run_backfill(spec)
    assert e.value.field == "table.uri"


def test_a_struct_output_committed_in_several_groups_reads_back_exactly(table):
    # Commits build the DataFile entries of outputs from one read footer (same schema, same
    # format): a nested type, with several field ids and columns, checks that shortcut.
    src = ("import pyarrow as pa, pyarrow.compute as pc\n"
           "def f(a):\n    return pa.StructArray.from_arrays([a, pc.cast(a, pa.string())], names=['n', 's'])\n")
    r = run_backfill(spec_for(table, "t", "st", "st_mod:f", ["a"], "struct<n: int64, s: string>",
                              commitEvery=1, udf={"source": src, "batchSize": 500}))
    assert r.commits == 3
    got = read(table, "id", "a", "st")
    assert got["st"] == [{"n": a, "s": None if a is None else str(a)} for a in got["a"]]
