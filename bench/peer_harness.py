"""What every peer script (peer_geneva.py, peer_lance_ray.py, peer_daft.py) shares, run by the
peer's own virtualenv python: the command line, a local Ray of --num-cpus started untimed, an
untimed warm-up, the timed jobs and the JSON lines the parent (bench/peers.py) reads.

    <venv>/bin/python -P bench/peer_X.py --job trivial=DB1 --job heavy=DB2 [--warmup-db DIR] [--num-cpus 2]

Prints one JSON line per job ({"job": ..., "ok": true, "seconds": ..., "rows": ...} or
{"ok": false, "error": ...}) and a last one with the whole run (versions, ray_start_seconds,
warmup_seconds, jobs). Only the standard library and the peer's own packages: nothing of the
project's virtualenv is importable here (bench/ is, through PYTHONPATH, for data.py and udfs.py).
"""
import argparse
import contextlib
import json
import time
import traceback

def count_rows(db_dir: str, table: str) -> int:
    import lance

    return lance.dataset(f"{db_dir}/{table}.lance").count_rows()


def run(backfill, versions, context=None, add_args=None, after_ray=None) -> int:
    """backfill(db_dir, table, udf, column, cpus, args) -> seconds of the timed call; versions() -> {name: version} of the peer's packages; context() -> a context manager
    entered once Ray is up (geneva's local Ray context); add_args(parser) for the peer's own
    flags; after_ray(args) to attach the peer to the Ray just started (daft's Ray runner)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--job", action="append", required=True, help="UDF=DBDIR (udf: trivial or heavy)")
    ap.add_argument("--table", default="bench")
    ap.add_argument("--column", default="out")
    ap.add_argument("--warmup-db", default=None)
    ap.add_argument("--num-cpus", type=int, default=2)
    if add_args:
        add_args(ap)
    args = ap.parse_args()
    out: dict = {"ok": False, "jobs": []}
    try:
        import ray

        out["versions"] = {"ray": ray.__version__, **versions()}
        t = time.perf_counter()
        # workers inherit this process's environment, PYTHONPATH included: bench.udfs imports there
        ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        if after_ray:
            after_ray(args)
        out["ray_start_seconds"] = time.perf_counter() - t
        with (context() if context else contextlib.nullcontext()):
            if args.warmup_db:
                t = time.perf_counter()
                backfill(args.warmup_db, args.table, "trivial", args.column, args.num_cpus, args)
                out["warmup_seconds"] = time.perf_counter() - t
            for job in args.job:
                udf, _, db = job.partition("=")
                j = {"job": job, "udf": udf, "db": db, "ok": False}
                try:
                    secs = backfill(db, args.table, udf, args.column, args.num_cpus, args)
                    j.update(ok=True, seconds=secs, rows=count_rows(db, args.table))
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
