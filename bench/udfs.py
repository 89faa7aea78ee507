"""The benchmark's two UDFs, as plain array -> array functions.

Every contender calls exactly these functions (the engine as ``Batch`` UDFs by import path, Lance's
``add_columns`` and geneva through thin wrappers), so all compute the same column.

- ``trivial``: ``num + 1`` (int64 -> int64): the cost is all I/O and framework overhead.
- ``heavy``: a hashed "embedding" of ``text`` (string -> fixed_size_list<float32>[16]): per byte and
  dimension a few transcendental ops, then an L2 normalisation; a few ms of CPU per 4096 rows,
  deterministic, single-threaded numpy (no BLAS, so no hidden thread pools on a 2-core box).

Only pyarrow and numpy: importable in the project venv, in Ray workers, and in the geneva venv.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EMBED_DIM = 16
HEAVY_ROUNDS = 2

_W = (np.arange(1, EMBED_DIM + 1, dtype=np.float64) * 0.618033988749895)[None, :]
_P = (np.arange(EMBED_DIM, dtype=np.float64) * 0.41421356237)[None, :]

# name -> (input column, output Arrow type as the engine's spec spells it, pyarrow type)
UDFS = {
    "trivial": ("num", "int64", pa.int64()),
    "heavy": ("text", f"fixed_size_list<float32>[{EMBED_DIM}]", pa.list_(pa.float32(), EMBED_DIM)),
}


def _one_array(a):
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a


def trivial(num) -> pa.Array:
    """num + 1."""
    return pc.add(_one_array(num), 1)


def heavy(text) -> pa.Array:
    """Hashed, L2-normalised 16-d embedding of each string (null is treated as "")."""
    text = _one_array(text)
    if text.type != pa.string():
        text = text.cast(pa.string())
    n = len(text)
    text = pc.fill_null(text, "")
    bufs = text.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[text.offset : text.offset + n + 1].astype(np.int64)
    start, end = int(offsets[0]), int(offsets[-1])
    data = (
        np.frombuffer(bufs[2], dtype=np.uint8)[start:end]
        if bufs[2] is not None and end > start
        else np.zeros(0, dtype=np.uint8)
    )
    # a 32-bit polynomial hash of each string's bytes (sum of byte * 31^pos), vectorised
    lengths = np.diff(offsets)
    row_of_byte = np.repeat(np.arange(n), lengths)
    pos = np.arange(end - start, dtype=np.int64) - (offsets[:-1] - start)[row_of_byte]
    powers = _powers(int(lengths.max()) if n else 0)
    h = np.zeros(n, dtype=np.uint64)
    nonempty = lengths > 0
    if nonempty.any():
        v = (data.astype(np.uint64) + np.uint64(1)) * powers[pos]
        h[nonempty] = np.add.reduceat(v, (offsets[:-1] - start)[nonempty])
    h = (h * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)  # Knuth's multiplicative mix
    # then rounds of a chaotic (non-contracting) per-row map into 16 dims: the CPU-heavy part
    x = np.sin((h.astype(np.float64) / 4294967296.0)[:, None] * _W * 64.0 + lengths[:, None] * _P)
    for _ in range(HEAVY_ROUNDS):
        x = np.sin(x * 7.3 + _P) + 0.5 * np.cos(x * 3.1)
    out = x
    norm = np.sqrt((out * out).sum(axis=1, keepdims=True))
    norm[norm == 0] = 1.0
    vec = (out / norm).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vec.reshape(-1), pa.float32()), EMBED_DIM)


_POW = [np.ones(1, dtype=np.uint64)]


def _powers(maxlen: int) -> np.ndarray:
    """31**i mod 2**64 for i < maxlen (uint64 arithmetic wraps)."""
    p = _POW[0]
    if len(p) < maxlen:
        p = np.array([pow(31, i, 1 << 64) for i in range(maxlen)], dtype=np.uint64)
        _POW[0] = p
    return p


def get(name: str):
    return {"trivial": trivial, "heavy": heavy}[name]


def lance_batch_udf(name: str, column: str):
    """The same function as a pylance ``add_columns`` UDF (RecordBatch -> RecordBatch)."""
    import lance

    in_col, _, out_type = UDFS[name]
    fn = get(name)
    schema = pa.schema([pa.field(column, out_type)])

    @lance.batch_udf(output_schema=schema)
    def _udf(batch: pa.RecordBatch) -> pa.RecordBatch:
        return pa.RecordBatch.from_arrays([fn(batch.column(in_col))], schema=schema)

    return _udf
