"""Engine benchmark (issue 2): rows/s of this engine against its peers, in one run.

    python -m bench.engine_bench [--rows 1000000] [--fragments 16] [--udfs trivial,heavy]
                                 [--only engine,lance,floor,geneva] [--repeat 3] [--geneva-repeat 1]

Contenders, each on its own byte-identical copy of one deterministic table (bench/data.py):

  engine   geneva_operator.engine.run_backfill on a local Ray (num_cpus=--cpus), driver in this process.
  lance    pylance's LanceDataset.add_columns with the same function as a batch UDF (one process).
  floor    the I/O floor: LanceDataset.add_columns reading only the UDF's input column and writing an
           output column of the UDF's output type and size without computing anything (trivial: the
           input column passed through unchanged, int64 -> int64; heavy: a preallocated constant
           fixed_size_list<float32>[16] slice), one data file per fragment, one commit. That is the
           least any backfill of that column must do: read the input, write the output, commit.
  geneva   LanceDB's geneva 0.17 backfill (add_columns + backfill), in its own virtualenv
           (bench/.venv-geneva, created here if missing) on its own local Ray, run as a subprocess.

What is timed: the backfill call only. Starting Ray (engine, geneva) is not timed and is printed
separately; before the timed runs, engine and geneva each backfill a small warm-up table once
(worker processes started and imports done), so the timed numbers are steady-state. Every
contender is run --repeat times (geneva --geneva-repeat times), each on a fresh copy; the best
time is reported. The floor and the engine run in turns (floor, engine, floor, engine, ...) once
Ray is up, so that load from other work on a shared host weighs on both alike; the target line
also gives each engine run's time over the floor run just before it. The engine's and geneva's
output columns are compared row by row with add_columns' output: a benchmark that measures a
wrong result is worthless.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# Lance's Rust log warns on every DataReplacement commit (engine and geneva both use them): quiet it.
os.environ.setdefault("LANCE_LOG", "error")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import data, udfs  # noqa: E402

GENEVA_VERSION = "0.17.0"
GENEVA_VENV = HERE / ".venv-geneva"
OUT_COL = "out"
CONTENDERS = ["engine", "lance", "floor", "geneva"]


@dataclass
class Result:
    contender: str
    udf: str
    rows: int
    times: list[float] = field(default_factory=list)
    error: Optional[str] = None
    note: str = ""
    check: str = ""  # row-by-row comparison with lance add_columns

    @property
    def seconds(self) -> Optional[float]:
        return min(self.times) if self.times else None

    @property
    def rows_per_s(self) -> Optional[float]:
        s = self.seconds
        return self.rows / s if s else None


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- contenders


def _dataset(db: Path):
    import lance

    return lance.dataset(str(db / f"{data.TABLE_NAME}.lance"))


def run_lance(db: Path, udf: str) -> float:
    in_col = udfs.UDFS[udf][0]
    fn = udfs.lance_batch_udf(udf, OUT_COL)
    ds = _dataset(db)
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
    ds = _dataset(db)
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


def run_engine(db: Path, udf: str) -> float:
    from geneva_operator.api.models import BackfillSpec
    from geneva_operator.engine import run_backfill

    spec = BackfillSpec.model_validate(engine_spec(db, udf))
    t = time.perf_counter()
    res = run_backfill(spec)
    secs = time.perf_counter() - t
    if res.rows_done != _dataset(db).count_rows():
        raise RuntimeError(f"engine reported {res.rows_done} rows done: {res}")
    return secs


# ----------------------------------------------------------------------------- geneva venv


def ensure_geneva_venv() -> Path:
    py = GENEVA_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run(
        [str(py), "-c", f"import geneva,sys; sys.exit(geneva.__version__ != {GENEVA_VERSION!r})"],
        capture_output=True,
    ).returncode == 0
    if not ok:
        log(f"creating {GENEVA_VENV} with geneva=={GENEVA_VERSION} (a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", str(GENEVA_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", f"geneva=={GENEVA_VERSION}"], check=True)
    return py


def run_geneva(jobs: list[tuple[str, Path]], warmup: Optional[Path], cpus: int, checkpoint_size: int,
               logfile: Path) -> dict:
    """All jobs in one subprocess of the geneva venv: one Ray start, one warm-up."""
    py = ensure_geneva_venv()
    # -P: no bench/ on geneva's sys.path, so nothing of ours can shadow a module it imports
    cmd = [str(py), "-P", str(HERE / "peer_geneva.py"), "--column", OUT_COL, "--num-cpus", str(cpus),
           "--checkpoint-size", str(checkpoint_size)]
    for udf, db in jobs:
        cmd += ["--job", f"{udf}={db}"]
    if warmup is not None:
        cmd += ["--warmup-db", str(warmup)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    with open(logfile, "a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n")
        lf.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, text=True, env=env, cwd=str(REPO), timeout=3600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        res = {"ok": False, "jobs": [], "error": f"exit {p.returncode}, no JSON line; stdout tail: {p.stdout[-500:]!r}"}
    res["cmd"] = " ".join(cmd)
    return res


# ----------------------------------------------------------------------------- checks


def column_of(db: Path):
    import pyarrow.compute as pc

    t = _dataset(db).to_table(columns=["id", OUT_COL])
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


# ----------------------------------------------------------------------------- main


def fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fragments", type=int, default=16)
    ap.add_argument("--udfs", default="trivial,heavy")
    ap.add_argument("--only", default=",".join(CONTENDERS), help="subset of " + ",".join(CONTENDERS))
    ap.add_argument("--repeat", type=int, default=3, help="runs of engine, lance, floor (best is kept)")
    ap.add_argument("--geneva-repeat", type=int, default=1)
    ap.add_argument("--geneva-checkpoint-size", type=int, default=4096,
                    help="rows per geneva checkpoint and udf call (0: geneva's adaptive default; 4096 measured fastest here, vs 0 and 65536)")
    ap.add_argument("--cpus", type=int, default=2, help="Ray CPUs for engine and geneva")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/geneva-operator-bench"))
    ap.add_argument("--warmup-rows", type=int, default=20_000)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    only = [c.strip() for c in args.only.split(",") if c.strip()]
    bad = set(only) - set(CONTENDERS)
    if bad:
        ap.error(f"unknown contenders {sorted(bad)}")
    udf_names = [u.strip() for u in args.udfs.split(",") if u.strip()]
    for u in udf_names:
        if u not in udfs.UDFS:
            ap.error(f"unknown udf {u!r}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    geneva_log = work / "geneva.log"
    geneva_log.write_text("")

    t = time.perf_counter()
    template = data.ensure_template(work, args.rows, args.fragments)
    warm_template = data.ensure_template(work, args.warmup_rows, 2)
    log(f"table: {args.rows} rows in {args.fragments} fragments at {template} ({time.perf_counter() - t:.1f}s)")
    if "geneva" in only:
        t = time.perf_counter()
        ensure_geneva_venv()
        log(f"geneva venv ready ({time.perf_counter() - t:.1f}s)")

    results: dict[tuple[str, str], Result] = {}
    refs = {}
    notes: list[str] = []

    def timed(contender: str, udf: str, fn: Callable[[Path, str], float], repeat: int) -> Result:
        return timed_together([(contender, fn)], udf, repeat)[0]

    def timed_together(contenders: list[tuple[str, Callable[[Path, str], float]]], udf: str, repeat: int) -> list[Result]:
        """Runs of the contenders taken in turns (a, b, a, b, ...), so that load from other work
        on the host, which comes and goes over seconds, weighs on each alike."""
        rs = []
        for contender, _ in contenders:
            rs.append(results.setdefault((contender, udf), Result(contender, udf, args.rows)))
        for i in range(repeat):
            for r, (contender, fn) in zip(rs, contenders):
                if r.error:
                    continue
                db = data.fresh_copy(template, work / f"{contender}-{udf}")
                try:
                    s = fn(db, udf)
                except Exception as e:  # noqa: BLE001  keep going: print what we have
                    r.error = f"{type(e).__name__}: {e}"
                    log(f"{contender}/{udf}: FAILED {r.error}")
                    continue
                r.times.append(s)
                log(f"{contender}/{udf} run {i + 1}/{repeat}: {s:.3f}s ({args.rows / s:,.0f} rows/s)")
        return rs

    # lance add_columns first: its output is the reference column
    for udf in udf_names:
        if "lance" in only or "engine" in only or "geneva" in only:
            r = timed("lance", udf, run_lance, args.repeat if "lance" in only else 1)
            if not r.error:
                refs[udf] = column_of(work / f"lance-{udf}")
            if "lance" not in only:
                del results[("lance", udf)]
        if "floor" in only and "engine" not in only:
            timed("floor", udf, run_floor, args.repeat)

    if "engine" in only:
        try:
            secs = start_engine_ray(args.cpus)
            notes.append(f"engine: local Ray start {secs:.1f}s (untimed)")
            for udf in udf_names:
                w = data.fresh_copy(warm_template, work / f"engine-warmup-{udf}")
                t = time.perf_counter()
                run_engine(w, udf)
                notes.append(f"engine: warm-up backfill {udf} on {args.warmup_rows} rows {time.perf_counter() - t:.2f}s (untimed)")
            for udf in udf_names:
                # The floor in turns with the engine (Ray up and idle for both): their ratio is the target.
                both = [("floor", run_floor)] if "floor" in only else []
                r = timed_together(both + [("engine", run_engine)], udf, args.repeat)[-1]
                if not r.error and udf in refs:
                    r.check = compare(work / f"engine-{udf}", refs[udf])
        except Exception as e:  # noqa: BLE001
            for udf in udf_names:
                results.setdefault(("engine", udf), Result("engine", udf, args.rows, error=f"{type(e).__name__}: {e}"))
                if "floor" in only and ("floor", udf) not in results:
                    timed("floor", udf, run_floor, args.repeat)
            log(f"engine unavailable: {type(e).__name__}: {e}")
        finally:
            try:
                import ray

                ray.shutdown()  # geneva starts its own Ray next: leave the CPUs to it
            except Exception:
                pass

    if "geneva" in only:
        jobs = []
        for udf in udf_names:
            results[("geneva", udf)] = Result("geneva", udf, args.rows)
            for i in range(args.geneva_repeat):
                jobs.append((udf, data.fresh_copy(template, work / f"geneva-{udf}-{i}")))
        warm = data.fresh_copy(warm_template, work / "geneva-warmup")
        log(f"geneva: {len(jobs)} backfills in one subprocess of {GENEVA_VENV} (log: {geneva_log})")
        res = run_geneva(jobs, warm, args.cpus, args.geneva_checkpoint_size, geneva_log)
        notes.append(f"geneva {res.get('geneva_version', '?')}: local Ray start {res.get('ray_start_seconds', 0):.1f}s, "
                     f"warm-up backfill (trivial, {args.warmup_rows} rows) {res.get('warmup_seconds', 0):.1f}s (untimed); "
                     f"checkpoint_size={args.geneva_checkpoint_size or 'geneva default'}, concurrency={args.cpus}")
        if res.get("error"):
            notes.append(f"geneva failed: {res['cmd']}\n    {res['error']}\n    "
                         + (res.get("traceback") or "").strip().replace("\n", "\n    ")[-1500:])
        for j, (udf, db) in zip(res.get("jobs", []), jobs):
            r = results[("geneva", udf)]
            if not j.get("ok"):
                r.error = j.get("error", "failed")
                notes.append(f"geneva/{udf} failed: {r.error}\n    " + (j.get("traceback") or "")[-1500:].replace("\n", "\n    "))
                continue
            r.times.append(j["seconds"])
            log(f"geneva/{udf}: {j['seconds']:.3f}s ({args.rows / j['seconds']:,.0f} rows/s)")
            if udf in refs and not r.check.startswith("MISMATCH"):
                r.check = compare(db, refs[udf])
        for udf in udf_names:
            r = results[("geneva", udf)]
            if not r.times and not r.error:
                r.error = res.get("error", "no result")

    # ------------------------------------------------------------------ report
    print()
    print(f"Engine benchmark: {args.rows:,} rows, {args.fragments} fragments, {args.cpus} Ray CPUs, "
          f"best of {args.repeat} (geneva: {args.geneva_repeat}); host: {os.cpu_count()} cores, "
          f"load avg {os.getloadavg()[0]:.1f}")
    print("udfs: trivial = num + 1 (int64 -> int64); heavy = hashed embedding of text "
          f"(string -> fixed_size_list<float32>[{udfs.EMBED_DIM}])")
    print("floor = add_columns reading the input column and writing a same-type, same-size column "
          "with no computation (pass-through / constant)")
    hdr = f"{'contender':<9} {'udf':<8} {'rows':>10} {'seconds':>9} {'rows/s':>12} {'engine x':>9}  check"
    print(hdr)
    print("-" * len(hdr))
    for udf in udf_names:
        eng = results.get(("engine", udf))
        for c in CONTENDERS:
            r = results.get((c, udf))
            if r is None:
                continue
            speed = (r.seconds / eng.seconds) if (eng and eng.seconds and r.seconds) else None
            check = r.check or ("reference" if c == "lance" else "")
            if r.error:
                check = f"ERROR {r.error[:80]}"
            print(f"{c:<9} {udf:<8} {r.rows:>10,} {fmt(r.seconds, '9.3f')} {fmt(r.rows_per_s, '12,.0f')} "
                  f"{fmt(speed, '8.2f') + ('x' if speed else ''):>9}  {check}")
    print("('engine x' = contender's time / engine's time: how many times faster the engine is)")
    print()
    for n in notes:
        print("note:", n)
    print()
    status = 0
    for udf in udf_names:
        eng, gen = results.get(("engine", udf)), results.get(("geneva", udf))
        if eng and gen and eng.rows_per_s and gen.rows_per_s:
            ratio = eng.rows_per_s / gen.rows_per_s
            ok = ratio >= 2.0
            print(f"target engine/geneva rows/s >= 2.0 [{udf}]: {'PASS' if ok else 'MISS'} "
                  f"({eng.rows_per_s:,.0f} / {gen.rows_per_s:,.0f} = {ratio:.2f})")
            status |= 0 if ok else 1
        elif "engine" in only and "geneva" in only:
            print(f"target engine/geneva rows/s >= 2.0 [{udf}]: n/a (a contender failed)")
    eng, flo = results.get(("engine", "trivial")), results.get(("floor", "trivial"))
    if eng and flo and eng.seconds and flo.seconds:
        ratio = eng.seconds / flo.seconds
        ok = ratio <= 1.3
        # runs were taken in turns: each engine run against the floor run just before it
        pairs = [e / f for e, f in zip(eng.times, flo.times)]
        print(f"target engine time / I/O floor time <= 1.3 [trivial]: {'PASS' if ok else 'MISS'} "
              f"({eng.seconds:.3f}s / {flo.seconds:.3f}s = {ratio:.2f}; run by run: "
              f"{', '.join(f'{x:.2f}' for x in pairs)}, median {statistics.median(pairs):.2f})")
        status |= 0 if ok else 1
    for (c, udf), r in results.items():
        if r.check.startswith("MISMATCH") or r.check.startswith("unreadable"):
            print(f"WRONG RESULT: {c}/{udf}: {r.check}")
            status |= 2
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{"contender": r.contender, "udf": r.udf, "rows": r.rows, "times": r.times, "seconds": r.seconds,
              "rows_per_s": r.rows_per_s, "error": r.error, "check": r.check} for r in results.values()], indent=1))
    # the benchmark reports; it does not fail a build on a missed target, only on a wrong result
    return 2 if status & 2 else 0


if __name__ == "__main__":
    sys.exit(main())
