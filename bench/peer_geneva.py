"""LanceDB geneva 0.17's backfill on a benchmark table, run by the geneva virtualenv's python.

    bench/.venv-geneva/bin/python bench/peer_geneva.py --job trivial=DB1 --job heavy=DB2 \
        [--warmup-db DIR] [--num-cpus 2] [--checkpoint-size N]

Starts a local Ray (untimed, like every contender's cluster start), enters geneva's local Ray
context (``ray_cluster(local=True)``, what ``Connection.local_ray_context()`` does), optionally
backfills a small warm-up table with the trivial udf (untimed), then for each job times
``add_columns`` + ``backfill`` of that table. Prints one JSON line per job ({"job": ...,
"ok": true, "seconds": ..., "rows": ...} or {"ok": false, "error": ...}), then a last JSON line
with the whole run (ray_start_seconds, warmup_seconds, jobs).
"""
import argparse
import json
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _make_udf(name: str):
    import geneva
    import pyarrow as pa

    from bench import udfs

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
    kw = {"checkpoint_size": CHECKPOINT_SIZE[0]} if CHECKPOINT_SIZE[0] else {}
    return geneva.udf(_f, data_type=out_type, version="1", input_columns=[in_col], num_cpus=1, **kw)


CHECKPOINT_SIZE = [0]  # 0: geneva's default (adaptive)


def _backfill(db_dir: str, table: str, udf_name: str, column: str, concurrency: int) -> tuple[float, int, object]:
    import geneva

    db = geneva.connect(db_dir)
    tbl = db.open_table(table)
    rows = tbl.count_rows()
    t0 = time.perf_counter()
    tbl.add_columns({column: _make_udf(udf_name)})
    kw = {"checkpoint_size": CHECKPOINT_SIZE[0]} if CHECKPOINT_SIZE[0] else {}
    res = tbl.backfill(column, concurrency=concurrency, **kw)
    return time.perf_counter() - t0, rows, res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", action="append", required=True, help="UDF=DBDIR (udf: trivial or heavy)")
    ap.add_argument("--table", default="bench")
    ap.add_argument("--column", default="out")
    ap.add_argument("--warmup-db", default=None)
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--checkpoint-size", type=int, default=0, help="rows per geneva checkpoint (0: geneva's default)")
    args = ap.parse_args()
    CHECKPOINT_SIZE[0] = args.checkpoint_size
    out: dict = {"ok": False, "jobs": []}
    try:
        import geneva
        import ray
        from geneva.runners.ray._mgr import ray_cluster

        out["geneva_version"] = geneva.__version__
        out["ray_version"] = ray.__version__
        t = time.perf_counter()
        pythonpath = os.pathsep.join(p for p in [REPO, os.environ.get("PYTHONPATH", "")] if p)
        ray.init(
            num_cpus=args.num_cpus,
            include_dashboard=False,
            runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
            log_to_driver=False,
        )
        out["ray_start_seconds"] = time.perf_counter() - t
        with ray_cluster(local=True, log_to_driver=False):
            if args.warmup_db:
                t = time.perf_counter()
                _backfill(args.warmup_db, args.table, "trivial", args.column, args.num_cpus)
                out["warmup_seconds"] = time.perf_counter() - t
            for job in args.job:
                udf, _, db = job.partition("=")
                j = {"job": job, "udf": udf, "db": db, "ok": False}
                try:
                    secs, rows, res = _backfill(db, args.table, udf, args.column, args.num_cpus)
                    j.update(ok=True, seconds=secs, rows=rows, result=repr(res)[:200])
                except Exception as e:  # noqa: BLE001
                    j["error"] = f"{type(e).__name__}: {e}"
                    j["traceback"] = traceback.format_exc()[-3000:]
                print(json.dumps(j), flush=True)
                out["jobs"].append(j)
        out["ok"] = all(j["ok"] for j in out["jobs"])
    except BaseException as e:  # report, never hang the parent
        out["error"] = f"{type(e).__name__}: {e}"
        out["traceback"] = traceback.format_exc()[-4000:]
    finally:
        try:
            import ray

            ray.shutdown()
        except Exception:
            pass
    print(json.dumps(out), flush=True)
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
