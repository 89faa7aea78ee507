"""lance-ray's add_columns on a benchmark table, run by the lance-ray virtualenv's python.

    <venv>/bin/python -P bench/peer_lance_ray.py --job trivial=DB1 --job heavy=DB2 [--warmup-db DIR] [--num-cpus 2]

``lance_ray.add_columns(uri, transform=<the udf as a Lance batch UDF>, read_columns=[input],
batch_size=4096, concurrency=--num-cpus)``: a ``ray.util.multiprocessing.Pool`` of that many
processes, one Pool task per fragment (``Fragment.merge_columns``), then one Merge commit. The
Pool is created by each call, so its start is part of what a user waits for: it is timed. Its
``filter`` argument is documented as not supported yet (and ignored), so a filtered backfill
cannot be expressed.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import peer_harness, udfs  # noqa: E402


def backfill(db_dir: str, table: str, udf: str, column: str, cpus: int, args) -> float:
    import lance_ray

    fn = udfs.lance_batch_udf(udf, column)
    t = time.perf_counter()
    lance_ray.add_columns(f"{db_dir}/{table}.lance", transform=fn, read_columns=[udfs.UDFS[udf][0]],
                          batch_size=4096, concurrency=cpus)
    return time.perf_counter() - t


def versions() -> dict:
    from importlib.metadata import version

    return {"lance-ray": version("lance-ray"), "pylance": version("pylance")}


if __name__ == "__main__":
    sys.exit(peer_harness.run(backfill, versions))
