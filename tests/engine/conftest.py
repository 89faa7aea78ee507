"""Shared fixtures of the engine tier: one local Ray for the whole session, table builders."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parent.parent

# Before Ray starts: its workers inherit this environment (udf modules, S3 test credentials).
os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("LANCE_LOG", "error")
sys.path.insert(0, str(HERE))


@pytest.fixture(scope="session")
def ray_session():
    import ray

    for attempt in range(3):
        try:
            if not ray.is_initialized():
                ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
            break
        except Exception as e:  # noqa: BLE001 - Ray gives its raylet a fixed 30 s, too short on a loaded 2-core box
            if "timed out during startup" not in str(e) or attempt == 2:
                raise
            ray.shutdown()
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "db")


def make_table(db: str, name: str, fragments: list, **kw):
    """A LanceDB table with one fragment per pyarrow table in `fragments` (unequal sizes welcome)."""
    import lancedb

    conn = lancedb.connect(db, **kw)
    t = conn.create_table(name, fragments[0])
    for part in fragments[1:]:
        t.add(part)
    return t


def spec_for(db: str, name: str, column: str, function: str, inputs: list[str], output_type: str, **extra) -> dict:
    udf = {"function": function, "inputColumns": inputs, "outputType": output_type}
    udf.update(extra.pop("udf", {}))
    return {"table": {"uri": db, "name": name, **extra.pop("table", {})}, "column": column, "udf": udf, **extra}


def make_tagged_table(db: str, sizes: list[int], null_every: int, name: str = "t") -> int:
    """A table of fragments of the given (unequal) sizes: `id` 0..n-1, `x` = id with a null
    every `null_every` rows, `frag` = the fragment's index. Returns the row count."""
    import pyarrow as pa

    parts, start = [], 0
    for i, n in enumerate(sizes):
        parts.append(pa.table({"id": pa.array(range(start, start + n), pa.int64()),
                               "x": pa.array([None if j % null_every == 0 else j for j in range(start, start + n)], pa.int64()),
                               "frag": pa.array([i] * n, pa.int64())}))
        start += n
    make_table(db, name, parts)
    return start
