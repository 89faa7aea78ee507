import pyarrow as pa
import pytest

from geneva_operator.api.arrow_types import ArrowTypeError
from geneva_operator.engine.errors import UdfError
from geneva_operator.engine.types import coerce_output, to_pyarrow

pytestmark = pytest.mark.engine


@pytest.mark.parametrize("text,expected", [
    ("int32", pa.int32()),
    ("float", pa.float32()),
    ("double", pa.float64()),
    ("utf8", pa.string()),
    ("bool", pa.bool_()),
    ("list<float32>", pa.list_(pa.float32())),
    ("large_list<string>", pa.large_list(pa.string())),
    ("fixed_size_list<float32>[384]", pa.list_(pa.float32(), 384)),
    ("struct<a: int64, b: list<string>>", pa.struct([("a", pa.int64()), ("b", pa.list_(pa.string()))])),
    ("timestamp[us, UTC]", pa.timestamp("us", tz="UTC")),
    ("date32", pa.date32()),
])
def test_every_grammar_type_maps_to_its_pyarrow_type(text, expected):
    assert to_pyarrow(text) == expected


def test_an_unknown_type_is_a_parse_error():
    with pytest.raises(ArrowTypeError, match="unknown Arrow type 'int33'"):
        to_pyarrow("int33")


def test_numpy_int64_output_is_narrowed_to_int32_when_values_fit():
    out = coerce_output(pa.array([1, 2, None], pa.int64()), pa.int32(), 3, where="f")
    assert out.type == pa.int32() and out.to_pylist() == [1, 2, None]


def test_python_lists_are_converted_to_the_declared_type():
    out = coerce_output([[1.0, 2.0], None], pa.list_(pa.float32(), 2), 2, where="f")
    assert out.type == pa.list_(pa.float32(), 2) and out.to_pylist() == [[1.0, 2.0], None]


def test_out_of_range_values_are_an_error_not_a_silent_wraparound():
    with pytest.raises(UdfError, match="outputType"):
        coerce_output(pa.array([2**40]), pa.int32(), 1, where="f")


def test_a_wrong_length_names_the_function():
    with pytest.raises(UdfError, match=r"returned 2 values for 3 input rows") as e:
        coerce_output(pa.array([1, 2]), pa.int64(), 3, where="udf m:f")
    assert e.value.field == "udf.function"


def test_a_wrong_kind_of_type_names_output_type():
    with pytest.raises(UdfError, match=r"returned type string, but udf.outputType is int32") as e:
        coerce_output(pa.array(["a"]), pa.int32(), 1, where="udf m:f")
    assert e.value.field == "udf.outputType"
