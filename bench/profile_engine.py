"""Where does the engine's time go? A timeline of one run_backfill, phase by phase.

    python -m bench.profile_engine [--rows 1000000] [--fragments 16] [--udf trivial] [--runs 3]

Wraps (in this process only, the engine's code is untouched) the driver's phases: reading the
run marker, planning, the first connection to Ray, the task loop, each commit; and, inside the Ray
workers, each fragment's steps: opening the dataset, reading + calling the udf, writing the
data file, writing the checkpoint record. Prints the phases of the best of --runs warm runs (Ray
started and one warm-up run done beforehand, as in engine_bench).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("LANCE_LOG", "error")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import data  # noqa: E402
from bench.contenders import engine_spec, start_engine_ray  # noqa: E402

_T0 = [0.0]
EVENTS: list[tuple[str, float, float]] = []  # (name, start, end) relative to run start, driver side


def _wrap(mod, name: str, label: str | None = None):
    """Time every call of mod.name (skipped, with a note, if the engine no longer has it)."""
    orig = getattr(mod, name, None)
    if orig is None:
        print(f"(not timed: {getattr(mod, '__name__', mod)}.{name} does not exist)")
        return None

    def w(*a, **k):
        s = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            EVENTS.append((label or name, s - _T0[0], time.perf_counter() - _T0[0]))

    w.__wrapped__ = orig
    setattr(mod, name, w)
    return orig


def profiled_compute_fragment(ctx, unit):
    """Runs in a Ray worker: the engine's compute_fragment with its steps timed."""
    from geneva_operator.engine import execute as ex

    steps: dict[str, float] = defaultdict(float)
    if not getattr(ex, "_bench_patched", False):
        ex._bench_patched = True
        ex._bench_steps = None

        def timed(fn, label):
            def w(*a, **k):
                s = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    if ex._bench_steps is not None:
                        ex._bench_steps[label] += time.perf_counter() - s
            return w

        ex._dataset = timed(ex._dataset, "open dataset")
        if hasattr(ex, "write_record"):
            ex.write_record = timed(ex.write_record, "write checkpoint record")
        if hasattr(ex, "CheckpointStore"):
            ex.CheckpointStore.write_record = timed(ex.CheckpointStore.write_record, "write checkpoint record")
        orig_writer = ex.LanceFileWriter

        class Writer:
            def __init__(self, *a, **k):
                s = time.perf_counter()
                self._w = orig_writer(*a, **k)
                ex._bench_steps["write data file"] += time.perf_counter() - s

            def write_batch(self, b):
                s = time.perf_counter()
                self._w.write_batch(b)
                ex._bench_steps["write data file"] += time.perf_counter() - s

            def close(self):
                s = time.perf_counter()
                self._w.close()
                ex._bench_steps["write data file"] += time.perf_counter() - s

            @property
            def size_bytes(self):
                return self._w.size_bytes

        ex.LanceFileWriter = Writer
        orig_runner = ex.UdfRunner

        class Runner:
            def __init__(self, udf):
                s = time.perf_counter()
                self._r = orig_runner(udf)
                ex._bench_steps["udf load"] += time.perf_counter() - s

            @property
            def calls(self):
                return self._r.calls

            def __call__(self, b):
                s = time.perf_counter()
                try:
                    return self._r(b)
                finally:
                    ex._bench_steps["udf calls"] += time.perf_counter() - s

        ex.UdfRunner = Runner
    ex._bench_steps = steps
    wall0 = time.time()
    s = time.perf_counter()
    res = ex._bench_orig_compute(ctx, unit)
    total = time.perf_counter() - s
    steps["read + rest (total - timed steps)"] = total - sum(steps.values())
    res._bench = {"steps": dict(steps), "total": total, "start_wall": wall0, "pid": os.getpid()}
    ex._bench_steps = None
    return res


def profiled_compute_fragments(*args, **kwargs):
    """Runs in a Ray worker: the engine's own task function (this process's copy of the module
    was not swapped), with each fragment's compute_fragment timed."""
    from geneva_operator.engine import execute as ex

    if not hasattr(ex, "_bench_orig_compute"):
        ex._bench_orig_compute = ex.compute_fragment
        ex.compute_fragment = profiled_compute_fragment
    yield from ex.compute_fragments(*args, **kwargs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fragments", type=int, default=16)
    ap.add_argument("--udf", default="trivial")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/geneva-operator-bench"))
    args = ap.parse_args()

    from geneva_operator.api.models import BackfillSpec
    from geneva_operator.engine import commit, execute, run_backfill, runner

    work = Path(args.workdir)
    template = data.ensure_template(work, args.rows, args.fragments)
    warm = data.ensure_template(work, 20_000, 2)
    print(f"Ray start: {start_engine_ray(args.cpus):.2f}s (untimed)")
    run_backfill(BackfillSpec.model_validate(engine_spec(data.fresh_copy(warm, work / "prof-warm"), args.udf)))

    # driver-side wrappers
    for name in ["read_run_marker", "write_run_marker", "load_checkpoints", "plan", "finish_run", "fold",
                 "ensure_ray", "run_units"]:
        if hasattr(runner, name):
            _wrap(runner, name)
    _wrap(commit.Committer, "flush", "commit (flush)")
    _wrap(commit.Committer, "ensure_column", "  ensure column (open latest / add)")
    # worker-side: swap the task function run_units ships to Ray (pickled by reference to this
    # module, whose copy in the worker calls the worker's own, unswapped engine functions)
    execute.compute_fragments = profiled_compute_fragments
    getattr(execute, "_REMOTE", {}).clear()  # the engine caches its remote function: make it wrap the swapped one
    arrivals: list[tuple[float, object]] = []
    orig_add = commit.Committer.add

    def add(self, r):
        arrivals.append((time.perf_counter() - _T0[0], r))
        return orig_add(self, r)

    commit.Committer.add = add

    best = None
    for i in range(args.runs):
        db = data.fresh_copy(template, work / "prof-run")
        spec = BackfillSpec.model_validate(engine_spec(db, args.udf))
        EVENTS.clear()
        arrivals.clear()
        _T0[0] = time.perf_counter()
        t0_wall = time.time()
        res = run_backfill(spec)
        total = time.perf_counter() - _T0[0]
        print(f"run {i + 1}: {total:.3f}s, {res.commits} commits, {res.fragments_done} fragments")
        if best is None or total < best[0]:
            best = (total, list(EVENTS), list(arrivals), t0_wall)

    total, events, arr, t0_wall = best
    print(f"\nbest run: {total:.3f}s for {args.rows:,} rows / {args.fragments} fragments, udf {args.udf}")
    print("driver phases (start..end s from run start, duration):")
    for name, s, e in sorted(events, key=lambda x: x[1]):
        print(f"  {name:<34} {s:7.3f} .. {e:7.3f}  {e - s:7.3f}s")
    accounted = sum(e - s for n, s, e in events if n in ("read_run_marker", "write_run_marker", "load_checkpoints", "plan", "run_units", "finish_run", "fold"))
    print(f"  {'(outside those phases)':<34} {'':>18}  {total - accounted:7.3f}s")
    steps: dict[str, float] = defaultdict(float)
    tasks = []
    for at, r in arr:
        b = getattr(r, "_bench", None)
        if b:
            tasks.append((b["start_wall"] - t0_wall, b["total"], at, b["pid"]))
            for k, v in b["steps"].items():
                steps[k] += v
    if tasks:
        n = len(tasks)
        busy = sum(t[1] for t in tasks)
        print(f"\nfragments computed: {n}, sum of their time {busy:.3f}s over {len({t[3] for t in tasks})} workers "
              f"(mean {busy / n * 1000:.1f} ms/fragment); start..end relative to run start:")
        for k, v in sorted(steps.items(), key=lambda kv: -kv[1]):
            print(f"  {k:<34} {v:7.3f}s total  {v / n * 1000:7.1f} ms/fragment")
        first_start = min(t[0] for t in tasks)
        last_end = max(t[0] + t[1] for t in tasks)
        print(f"  first fragment starts at {first_start:.3f}s, last fragment ends at {last_end:.3f}s, "
              f"last result reaches the driver at {max(t[2] for t in tasks):.3f}s")
        gaps = []
        for pid in {t[3] for t in tasks}:
            mine = sorted((t[0], t[0] + t[1]) for t in tasks if t[3] == pid)
            gaps += [b[0] - a[1] for a, b in zip(mine, mine[1:])]
        if gaps:
            print(f"  idle gap between consecutive fragments on a worker: mean {sum(gaps) / len(gaps) * 1000:.1f} ms, "
                  f"max {max(gaps) * 1000:.1f} ms ({len(gaps)} gaps, {sum(gaps):.3f}s in all)")
        cap = (last_end - first_start) * args.cpus
        print(f"  worker utilisation between first start and last end: {busy / cap * 100:.0f}% of {args.cpus} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
