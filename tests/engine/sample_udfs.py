"""UDFs used by the engine tests. Importable by Ray workers: conftest puts this directory
on PYTHONPATH before the shared Ray session starts."""
from __future__ import annotations

import collections
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def plus_one(x: pa.Array) -> pa.Array:
    return pc.add(x, 1)


def length(s: pa.Array) -> pa.Array:
    return pc.utf8_length(s).cast(pa.int32())


def rb_sum(batch: pa.RecordBatch) -> pa.Array:
    return pc.add(batch.column("a"), batch.column("b"))


def scalar_describe(a, s):
    if a is None:
        return None  # a null output that still counts as computed
    return f"{a}:{'-' if s is None else s.upper()}"


def wrong_length(x: pa.Array) -> pa.Array:
    return x.slice(0, max(0, len(x) - 1))


def wrong_type(x: pa.Array) -> pa.Array:
    return pa.array(["nope"] * len(x))


def raises(x: pa.Array) -> pa.Array:
    raise RuntimeError("model exploded")


class Logged:
    """Batch udf over (x, frag): x * 2, logging 'frag rows' per call and tag to `log`, sleeping `delay` per call."""

    def __init__(self, log: str, delay: float = 0.0):
        self.log, self.delay = log, delay

    def __call__(self, x: pa.Array, frag: pa.Array) -> pa.Array:
        with open(self.log, "a") as f:
            for tag, n in collections.Counter(frag.to_pylist()).items():  # a compacted fragment mixes tags
                f.write(f"{tag} {n}\n")
        if self.delay:
            time.sleep(self.delay)
        return pc.multiply(x, 2)


class CrashOnce:
    """Kills its worker process the first time it is called (marked by a file), like an OOM kill."""

    instances = 0

    def __init__(self, marker: str):
        self.marker = marker
        CrashOnce.instances += 1

    def __call__(self, x: pa.Array) -> pa.Array:
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as f:
                f.write(str(os.getpid()))
            os._exit(17)
        return pc.multiply(x, 3)


class Counter:
    """Counts its instances in a file: proves one instance per worker process, not per batch."""

    def __init__(self, log: str):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\n")

    def __call__(self, x: pa.Array) -> pa.Array:
        return pc.add(x, 10)


def vec3(x: pa.Array) -> pa.Array:
    vals = np.repeat(np.nan_to_num(x.to_numpy(zero_copy_only=False).astype(np.float32)), 3)
    return pa.FixedSizeListArray.from_arrays(pa.array(vals, pa.float32()), 3)


class FailOnTagUntil:
    """Batch udf over (x, frag): x * 2, logging like Logged, but raising on fragment `tag` until
    the file `healed` exists: the same udf (same key) fails in one run and works in the next."""

    def __init__(self, log: str, tag: int, healed: str):
        self.logged, self.tag, self.healed = Logged(log), tag, healed

    def __call__(self, x: pa.Array, frag: pa.Array) -> pa.Array:
        if self.tag in frag.to_pylist() and not os.path.exists(self.healed):
            raise RuntimeError(f"fragment {self.tag} is not ready")
        return self.logged(x, frag)


# Every output type the README lists, as (spec outputType, value of row `id`); None every 7th
# row, since a null output still counts as computed.
TYPED = {
    "int64": ("int64", lambda i: i * 2),
    "list": ("list<float32>", lambda i: [float(i)] * (i % 4)),  # empty lists too
    "fixed_size_list": ("fixed_size_list<float32>[3]", lambda i: [float(i), i + 0.5, -float(i)]),
    "struct": ("struct<a: int64, b: string>", lambda i: {"a": i, "b": f"s{i}"}),
    "timestamp": ("timestamp[us, UTC]", lambda i: i * 1_000_003),
    "binary": ("binary", lambda i: str(i).encode() * (i % 3)),
}


def typed_value(kind: str, i: int):
    return None if i % 7 == 0 else TYPED[kind][1](i)


class Typed:
    """Batch udf over `id`: typed_value(kind, id), appending every id it is called on to `log`
    (raw int64s), and raising for ids in [fail_from, fail_to) until the file `healed` exists."""

    def __init__(self, kind: str, log: str, fail_from: int = -1, fail_to: int = -1, healed: str = ""):
        from geneva_operator.engine.types import to_pyarrow

        self.kind, self.log, self.type = kind, log, to_pyarrow(TYPED[kind][0])
        self.fail, self.healed = (fail_from, fail_to), healed

    def __call__(self, ids: pa.Array) -> pa.Array:
        values = ids.to_pylist()
        lo, hi = self.fail
        if any(lo <= i < hi for i in values) and not os.path.exists(self.healed):
            raise RuntimeError(f"ids {lo}..{hi} are not ready")
        with open(self.log, "ab") as f:  # one O_APPEND write per call: whole even with two workers
            f.write(np.asarray(values, dtype="<i8").tobytes())
        return pa.array([typed_value(self.kind, i) for i in values], self.type)


class NotCallable:
    """A class whose instances cannot be called: a udf.function mistake caught before any run."""

    def predict(self, x):
        return x
