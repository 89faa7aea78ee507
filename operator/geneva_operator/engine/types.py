"""From the shared type grammar (api.arrow_types) to pyarrow, and output coercion."""
from __future__ import annotations

import pyarrow as pa

from ..api.arrow_types import ArrowType, parse_arrow_type
from .errors import UdfError

_PRIMITIVES = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float16": pa.float16(), "float32": pa.float32(), "float64": pa.float64(),
    "bool": pa.bool_(), "string": pa.string(), "large_string": pa.large_string(),
    "binary": pa.binary(), "large_binary": pa.large_binary(),
    "date32": pa.date32(), "date64": pa.date64(),
}


def to_pyarrow(t: ArrowType | str) -> pa.DataType:
    if isinstance(t, str):
        t = parse_arrow_type(t)
    if t.name in _PRIMITIVES:
        return _PRIMITIVES[t.name]
    if t.name == "list":
        return pa.list_(to_pyarrow(t.item))
    if t.name == "large_list":
        return pa.large_list(to_pyarrow(t.item))
    if t.name == "fixed_size_list":
        return pa.list_(to_pyarrow(t.item), t.size)
    if t.name == "struct":
        return pa.struct([pa.field(n, to_pyarrow(ft)) for n, ft in t.fields])
    if t.name == "timestamp":
        return pa.timestamp(t.unit, tz=t.tz)
    raise ValueError(f"no pyarrow type for {t}")  # the grammar and this table disagree: a bug here


def _is_lossless_target(src: pa.DataType, dst: pa.DataType) -> bool:
    """Casts we apply silently: same kind, no loss a user would not expect (numpy-made int64
    into int32 is checked by a safe cast; float64 into float32 is what everyone means)."""
    if pa.types.is_null(src):
        return True
    if pa.types.is_integer(src) and pa.types.is_integer(dst):
        return True
    if pa.types.is_floating(src) and pa.types.is_floating(dst):
        return True
    if pa.types.is_integer(src) and pa.types.is_floating(dst):
        return True
    if (pa.types.is_string(src) or pa.types.is_large_string(src)) and (pa.types.is_string(dst) or pa.types.is_large_string(dst)):
        return True
    if (pa.types.is_binary(src) or pa.types.is_large_binary(src)) and (pa.types.is_binary(dst) or pa.types.is_large_binary(dst)):
        return True
    if _is_listlike(src) and _is_listlike(dst):
        return _is_lossless_target(src.value_type, dst.value_type)
    if pa.types.is_struct(src) and pa.types.is_struct(dst):
        names = {src.field(i).name: src.field(i).type for i in range(src.num_fields)}
        return all(dst.field(i).name in names and _is_lossless_target(names[dst.field(i).name], dst.field(i).type)
                   for i in range(dst.num_fields)) and len(names) == dst.num_fields
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(dst):
        return True
    return False


def _is_listlike(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def coerce_output(value, expected: pa.DataType, length: int, *, where: str) -> pa.Array:
    """Turn what a Batch/RecordBatch UDF returned into an array of `expected` with `length`
    rows, or raise UdfError naming udf.outputType. Accepts pyarrow arrays, chunked arrays,
    numpy arrays and Python lists (the last two go through pa.array with the expected type)."""
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if not isinstance(value, pa.Array):
        try:
            value = pa.array(value, type=expected)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
            raise UdfError("udf.outputType", f"{where} returned {type(value).__name__} that is not convertible to {expected}: {e}") from None
    if len(value) != length:
        raise UdfError("udf.function", f"{where} returned {len(value)} values for {length} input rows; the output must have one value per row")
    if value.type != expected:
        if not _is_lossless_target(value.type, expected):
            raise UdfError("udf.outputType", f"{where} returned type {value.type}, but udf.outputType is {expected}")
        try:
            value = value.cast(expected, safe=not (pa.types.is_floating(expected) and pa.types.is_floating(value.type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise UdfError("udf.outputType", f"{where} returned {value.type} values that do not fit {expected}: {e}") from None
    return value


def compatible_column(existing: pa.DataType, expected: pa.DataType) -> bool:
    """An existing output column is reused only when it holds exactly the declared type."""
    return existing == expected
