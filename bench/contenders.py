"""The contenders that run in the benchmark's own process (lance, floor, engine), and the check
of a contender's output column against the reference, row by row. See engine_bench.py.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import data, udfs  # noqa: E402

OUT_COL = "out"


def run_lance(db: Path, udf: str) -> float:
    in_col = udfs.UDFS[udf][0]
    fn = udfs.lance_batch_udf(udf, OUT_COL)
    ds = data.dataset(db)
    t = time.perf_counter()
    ds.add_columns(fn, read_columns=[in_col], batch_size=4096)
    return time.perf_counter() - t


def floor_udf(udf: str):
    """A batch UDF that writes a column of the UDF's output type without computing it."""
    import lance
    import numpy as np
    import pyarrow as pa

    in_col, _, out_type = udfs.UDFS[udf]
    schema = pa.schema([pa.field(OUT_COL, out_type)])
    if out_type == pa.int64():

        def make(batch):
            return batch.column(in_col)  # pass the int64 input through: same size, same type

    else:
        dim = out_type.list_size
        const = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros((1 << 16) * dim, np.float32)), dim)

        def make(batch):
            return const.slice(0, batch.num_rows)

    @lance.batch_udf(output_schema=schema)
    def _floor(batch):
        return pa.RecordBatch.from_arrays([make(batch)], schema=schema)

    return _floor


def run_floor(db: Path, udf: str) -> float:
    in_col = udfs.UDFS[udf][0]
    fn = floor_udf(udf)
    ds = data.dataset(db)
    t = time.perf_counter()
    ds.add_columns(fn, read_columns=[in_col], batch_size=4096)
    return time.perf_counter() - t


def engine_spec(db: Path, udf: str) -> dict:
    in_col, out_type, _ = udfs.UDFS[udf]
    return {
        "table": {"uri": str(db), "name": data.TABLE_NAME},
        "column": OUT_COL,
        "udf": {
            "function": f"bench.udfs:{udf}",
            "kind": "Batch",
            "inputColumns": [in_col],
            "outputType": out_type,
            "batchSize": 4096,
            "resources": {"cpu": 1},
        },
        "mode": "All",
        "cluster": {},  # required by the API (cluster xor existingCluster); the engine itself ignores it
    }


def start_engine_ray(cpus: int) -> float:
    """A local Ray for the engine (untimed); bench/ importable in its workers."""
    from geneva_operator.engine import ensure_ray

    paths = [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    t = time.perf_counter()
    ensure_ray(None, num_cpus=cpus)
    return time.perf_counter() - t


def run_engine(db: Path, udf: str, keep: Optional[list] = None) -> float:
    """Seconds of one run_backfill (its BackfillResult appended to keep, if given)."""
    from geneva_operator.api.models import BackfillSpec
    from geneva_operator.engine import run_backfill

    spec = BackfillSpec.model_validate(engine_spec(db, udf))
    t = time.perf_counter()
    res = run_backfill(spec)
    secs = time.perf_counter() - t
    if res.rows_done != data.dataset(db).count_rows():
        raise RuntimeError(f"engine reported {res.rows_done} rows done: {res}")
    if keep is not None:
        keep.append(res)
    return secs




def column_of(db: Path):
    import pyarrow.compute as pc

    t = data.dataset(db).to_table(columns=["id", OUT_COL])
    return t.take(pc.sort_indices(t, sort_keys=[("id", "ascending")]))


def compare(db: Path, ref) -> str:
    try:
        got = column_of(db)
    except Exception as e:  # noqa: BLE001
        return f"unreadable: {type(e).__name__}: {e}"
    if got.num_rows != ref.num_rows:
        return f"MISMATCH rows {got.num_rows} != {ref.num_rows}"
    if not got.column("id").equals(ref.column("id")):
        return "MISMATCH ids"
    a, b = got.column(OUT_COL), ref.column(OUT_COL)
    if a.null_count:
        return f"MISMATCH {a.null_count} nulls"
    if a.combine_chunks().equals(b.combine_chunks()):
        return "equal"
    import numpy as np

    av, bv = a.combine_chunks(), b.combine_chunks()
    if hasattr(av, "flatten"):
        av, bv = av.flatten(), bv.flatten()
    diff = np.abs(av.to_numpy(zero_copy_only=False).astype(np.float64) - bv.to_numpy(zero_copy_only=False).astype(np.float64))
    return f"MISMATCH max|diff|={diff.max():.3g}, {int((diff > 0).sum())} values differ"


def in_turns(template: Path, work: Path, runs: list[tuple[str, Callable[[Path], float]]], repeat: int,
             log: Callable[[str], None]) -> dict[str, list[float]]:
    """Each run fn(fresh copy of the template) -> seconds, taken in turns (a, b, a, b, ...) so that
    load from other work on the host, which comes and goes over seconds, weighs on each alike.
    A run that raises is not repeated (its times stay as they are); the copy is removed after."""
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    failed: set[str] = set()
    for i in range(repeat):
        for name, fn in runs:
            if name in failed:
                continue
            db = data.fresh_copy(template, work / f"{name}-run")
            try:
                s = fn(db)
            except Exception as e:  # noqa: BLE001  keep going: print what we have
                failed.add(name)
                log(f"{name}: FAILED {type(e).__name__}: {e}")
                continue
            finally:
                data.remove(db)
            times[name].append(s)
            log(f"{name} run {i + 1}/{repeat}: {s:.3f}s")
    return times
