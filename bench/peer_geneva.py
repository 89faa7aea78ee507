"""LanceDB geneva 0.17's backfill on a benchmark table, run by the geneva virtualenv's python.

    <venv>/bin/python -P bench/peer_geneva.py --job trivial=DB1 --job heavy=DB2 \
        [--warmup-db DIR] [--num-cpus 2] [--checkpoint-size N]

Inside geneva's local Ray context (``ray_cluster(local=True)``, what
``Connection.local_ray_context()`` does) on the Ray the harness started, times ``add_columns`` +
``backfill`` of each table (see peer_harness.py for the rest).
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import peer_harness, udfs  # noqa: E402


def _make_udf(name: str, checkpoint_size: int):
    import geneva
    import pyarrow as pa

    in_col, _, out_type = udfs.UDFS[name]
    fn = udfs.get(name)
    # geneva maps parameter names to input columns; pa.Array annotations select its batch mode.
    if in_col == "num":

        def _f(num: pa.Array) -> pa.Array:
            return fn(num)

    else:

        def _f(text: pa.Array) -> pa.Array:
            return fn(text)

    _f.__name__ = f"bench_{name}"
    kw = {"checkpoint_size": checkpoint_size} if checkpoint_size else {}
    return geneva.udf(_f, data_type=out_type, version="1", input_columns=[in_col], num_cpus=1, **kw)


def backfill(db_dir: str, table: str, udf: str, column: str, cpus: int, args) -> float:
    import geneva

    tbl = geneva.connect(db_dir).open_table(table)
    t0 = time.perf_counter()
    tbl.add_columns({column: _make_udf(udf, args.checkpoint_size)})
    kw = {"checkpoint_size": args.checkpoint_size} if args.checkpoint_size else {}
    tbl.backfill(column, concurrency=cpus, **kw)
    return time.perf_counter() - t0


def add_args(ap) -> None:
    ap.add_argument("--checkpoint-size", type=int, default=0, help="rows per geneva checkpoint (0: geneva's default)")


def context():
    from geneva.runners.ray._mgr import ray_cluster

    return ray_cluster(local=True, log_to_driver=False)


def versions() -> dict:
    import geneva

    return {"geneva": geneva.__version__}


if __name__ == "__main__":
    sys.exit(peer_harness.run(backfill, versions, context=context, add_args=add_args))
