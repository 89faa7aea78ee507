import numpy as np
import pyarrow as pa
import pytest

from conftest import make_table
from geneva_operator.engine.checkpoint import unpack_mask
from geneva_operator.engine.errors import SpecError
from geneva_operator.engine.manifest import parse_spec
from geneva_operator.engine.plan import plan
from geneva_operator.engine.table import TableLocation

pytestmark = pytest.mark.engine


def _table(db):
    parts = [pa.table({"id": pa.array(range(s, e), pa.int64()), "c": pa.array(range(s, e), pa.int32())})
             for s, e in [(0, 100), (100, 130), (130, 400)]]
    make_table(db, "t", parts)
    return TableLocation.from_ref(parse_spec({"table": {"uri": db, "name": "t"}, "column": "x",
                                              "udf": {"function": "m:f", "inputColumns": ["id"], "outputType": "int64"}}).table)


def _plan(db, **over):
    loc = _table(db) if not over.pop("_reuse", False) else TableLocation.from_ref(parse_spec(
        {"table": {"uri": db, "name": "t"}, "column": "x", "udf": {"function": "m:f", "inputColumns": ["id"], "outputType": "int64"}}).table)
    spec = {"table": {"uri": db, "name": "t"}, "column": "x",
            "udf": {"function": "m:f", "inputColumns": ["id"], "outputType": "int64", **over.pop("udf", {})}, **over}
    return plan(parse_spec(spec), loc, loc.open(), run_id="r")


def test_a_plain_run_plans_one_unit_per_fragment_reading_every_row(db):
    p = _plan(db)
    assert [(u.fragment_id, u.rows, u.compute) for u in p.units] == [(0, 100, None), (1, 30, None), (2, 270, None)]
    assert p.rows_total == 400 and not p.column_exists


def test_where_selects_rows_and_skips_fragments_with_nothing_to_do(db):
    p = _plan(db, where="id >= 120 AND id % 2 = 0")
    assert [u.fragment_id for u in p.units] == [1, 2]
    by_frag = {u.fragment_id: np.flatnonzero(unpack_mask(u.compute, u.physical_rows)) for u in p.units}
    assert list(by_frag[1]) == [i - 100 for i in range(120, 130, 2)]
    assert list(by_frag[2]) == [i - 130 for i in range(130, 400, 2)]


def test_deleted_rows_are_never_planned(db):
    t = make_table(db, "t", [pa.table({"id": pa.array(range(10), pa.int64())})])
    t.delete("id IN (2, 5)")
    loc = TableLocation.from_ref(parse_spec({"table": {"uri": db, "name": "t"}, "column": "x",
                                             "udf": {"function": "m:f", "inputColumns": ["id"], "outputType": "int64"}}).table)
    p = plan(parse_spec({"table": {"uri": db, "name": "t"}, "column": "x",
                         "udf": {"function": "m:f", "inputColumns": ["id"], "outputType": "int64"}}), loc, loc.open(), run_id="r")
    (u,) = p.units
    assert u.rows == 8 and not unpack_mask(u.compute, 10)[[2, 5]].any()


def test_an_invalid_where_names_the_where_field(db):
    with pytest.raises(SpecError, match="invalid filter") as e:
        _plan(db, where="id >>> 3")
    assert e.value.field == "where"


def test_a_where_on_an_unknown_column_names_the_where_field(db):
    with pytest.raises(SpecError) as e:
        _plan(db, where="nope = 1")
    assert e.value.field == "where"


def test_a_missing_input_column_names_input_columns(db):
    with pytest.raises(SpecError, match="column 'zz' is not in table 't'") as e:
        _plan(db, udf={"inputColumns": ["zz"]})
    assert e.value.field == "udf.inputColumns"


def test_an_existing_output_column_of_another_type_is_an_error(db):
    _table(db)
    with pytest.raises(SpecError, match="exists with type int32, but udf.outputType is int64") as e:
        _plan(db, column="c", _reuse=True)
    assert e.value.field == "column"


def test_an_existing_output_column_of_the_same_type_is_reused(db):
    _table(db)
    p = _plan(db, column="c", udf={"outputType": "int32"}, _reuse=True)
    assert p.column_exists and p.rows_total == 400
