import pyarrow as pa
import pytest

from geneva_operator.api.models import Udf
from geneva_operator.engine.errors import SpecError, UdfError
from geneva_operator.engine.udf import UdfRunner, get_callable, udf_key

pytestmark = pytest.mark.engine


def batch(**cols):
    return pa.RecordBatch.from_pydict(cols)


def test_a_batch_udf_gets_one_array_per_input_column_nulls_included():
    r = UdfRunner(Udf(function="sample_udfs:length", input_columns=["s"], output_type="int32"))
    assert r(batch(s=["ab", None, ""])).to_pylist() == [2, None, 0]
    assert r.calls == 1


def test_a_record_batch_udf_gets_the_input_columns_as_a_batch():
    r = UdfRunner(Udf(function="sample_udfs:rb_sum", kind="RecordBatch", input_columns=["a", "b"], output_type="int64"))
    assert r(batch(a=[1, 2], b=[10, None], other=["x", "y"])).to_pylist() == [11, None]


def test_a_scalar_udf_is_called_per_row_with_none_for_nulls():
    r = UdfRunner(Udf(function="sample_udfs:scalar_describe", kind="Scalar", input_columns=["a", "s"], output_type="string"))
    assert r(batch(a=[1, None, 3], s=["x", "y", None])).to_pylist() == ["1:X", None, "3:-"]
    assert r.calls == 3


def test_inline_source_is_executed_as_the_named_module():
    src = "import pyarrow.compute as pc\ndef double(x):\n    return pc.multiply(x, 2)\n"
    r = UdfRunner(Udf(function="inline_mod:double", source=src, input_columns=["x"], output_type="int64"))
    assert r(batch(x=[1, 2])).to_pylist() == [2, 4]


def test_a_class_is_instantiated_once_per_process_with_init_args(tmp_path):
    log = tmp_path / "inst.log"
    udf = Udf(function="sample_udfs:Counter", input_columns=["x"], output_type="int64", init_args={"log": str(log)})
    for _ in range(3):
        assert UdfRunner(udf)(batch(x=[1])).to_pylist() == [11]
    assert get_callable(udf) is get_callable(udf)
    assert len(log.read_text().split()) == 1


def test_a_class_with_setup_is_set_up_before_the_first_call():
    udf = Udf(function="examples.udfs.text:FakeEmbed", input_columns=["s"], output_type="fixed_size_list<float32>[8]",
              init_args={"dim": 8})
    out = UdfRunner(udf)(batch(s=["hello", None]))
    assert out.type == pa.list_(pa.float32(), 8) and len(out) == 2


def test_an_unimportable_module_names_udf_function():
    with pytest.raises(SpecError, match="cannot import module 'no_such_module'") as e:
        UdfRunner(Udf(function="no_such_module:f", input_columns=["x"], output_type="int64"))
    assert e.value.field == "udf.function"


def test_a_missing_attribute_names_udf_function():
    with pytest.raises(SpecError, match="has no attribute 'nope'"):
        UdfRunner(Udf(function="sample_udfs:nope", input_columns=["x"], output_type="int64"))


def test_a_raising_udf_is_reported_with_its_exception():
    r = UdfRunner(Udf(function="sample_udfs:raises", input_columns=["x"], output_type="int64"))
    with pytest.raises(UdfError, match="RuntimeError: model exploded"):
        r(batch(x=[1]))


def test_the_udf_key_changes_with_version_and_not_with_batch_size():
    a = Udf(function="m:f", input_columns=["x"], output_type="int64", version="1")
    assert udf_key(a, "c") == udf_key(a.model_copy(update={"batch_size": 7}), "c")
    assert udf_key(a, "c") != udf_key(a.model_copy(update={"version": "2"}), "c")
    assert udf_key(a, "c") != udf_key(a, "d")
    assert udf_key(a, "c") == udf_key(Udf(function="m:f", input_columns=["x"], output_type="int64", kind="Batch"), "c")
