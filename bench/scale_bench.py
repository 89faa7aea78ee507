"""How the engine's cost grows with the table (issue 12): three growth tables from one run.

    python -m bench.scale_bench [--sections fragments,rows,skew] [--repeat 3] [--cpus 2]
        [--frag-rows 1000000] [--frag-counts 16,256,1024]
        [--row-counts 1000000,10000000,50000000] [--row-fragments 64]
        [--skew-rows 1000000] [--skew-fragments 16] [--skew 10]

fragments  the trivial udf on one row count cut into more and more fragments, engine and I/O floor
           in turns (see engine_bench.py for the floor). The rows and bytes stay the same, so what
           grows is what a fragment costs by itself: planning, tasks, data files, commits and
           checkpoint records. The engine's fixed cost per fragment is the slope of a least-squares
           line through (fragments, best engine time); the floor's slope (Lance's own cost of a
           data file per fragment) and the engine's slope beyond it are printed beside it.
rows       the trivial udf on more and more rows in the same fragments: engine/floor, the driver's
           peak RSS (this process's VmHWM, reset before each engine run; the driver runs here) and
           the checkpoint bytes the run wrote under <table>.lance/_geneva/ (inotify: every record
           and state file completed, at its size then, including records deleted by the final fold).
skew       the heavy udf on a table whose first fragment holds --skew times the rows of each other
           fragment, and on the same rows in equal fragments: the engine's makespan against the
           ideal, the udf's own time over all batches in one process / Ray CPUs (measured in turns
           with the engine runs, bench.measure.udf_seconds); and against the fragments' own work in
           the workers / Ray CPUs (bench.measure.FragmentWork), which is what task sizing controls.

Every table prints the load average at its end: on a shared host compare ratios, not times.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Optional

os.environ.setdefault("LANCE_LOG", "error")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import data, measure  # noqa: E402
from bench.contenders import in_turns, run_engine, run_floor, start_engine_ray  # noqa: E402
from bench.peers import log  # noqa: E402

MB = 1 << 20


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x: (a, b)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def engine_run(udf: str, keep: list, watch_checkpoints: bool = False):
    """run_engine under the driver's peak-RSS window (and the checkpoint byte count, and the
    fragments' work in the workers): one dict per run in keep."""

    def run(db: Path) -> float:
        rec: dict = {}
        with measure.PeakRSS() as rss, measure.FragmentWork() as work:
            if watch_checkpoints:
                with measure.FileWrites(db / f"{data.TABLE_NAME}.lance" / "_geneva") as fw:
                    res: list = []
                    secs = run_engine(db, udf, res)
                rec.update(ckpt_bytes=fw.bytes, ckpt_files=fw.files, ckpt_missed=fw.missed)
            else:
                res = []
                secs = run_engine(db, udf, res)
        rec.update(seconds=secs, peak_rss=rss.bytes, start_rss=rss.start, commits=res[0].commits, work=work.seconds)
        keep.append(rec)
        return secs

    return run


def pairs(a: list[float], b: list[float]) -> str:
    """a's runs over b's, run by run (taken in turns), and their median."""
    r = [x / y for x, y in zip(a, b)]
    return f"{', '.join(f'{x:.2f}' for x in r)} (median {statistics.median(r):.2f})" if r else "-"


def head(title: str, hdr: str) -> None:
    print(f"\n{title}\n{hdr}\n{'-' * len(hdr)}")


def floor_and_engine(template: Path, work: Path, repeat: int) -> dict:
    """The trivial udf: floor and engine runs in turns, the engine's runs with RSS and checkpoint bytes."""
    keep: list = []
    t = in_turns(template, work, [("floor", lambda db: run_floor(db, "trivial")),
                                  ("engine", engine_run("trivial", keep, True))], repeat, log)
    return {"floor": t["floor"], "engine": t["engine"], "runs": keep}


def section_fragments(args, work: Path, out: dict) -> None:
    rows_out = []
    for f in args.frag_counts:
        template = data.ensure_template(work, args.frag_rows, f)
        rows_out.append({"fragments": f, **floor_and_engine(template, work, args.repeat)})
    out["fragments"] = rows_out
    head(f"Growth in fragments: {args.frag_rows:,} rows, trivial udf, {args.cpus} Ray CPUs, best of {args.repeat}",
         f"{'fragments':>9} {'floor s':>8} {'engine s':>9} {'eng/floor':>9} {'engine ms/frag':>14} "
         f"{'commits':>7} {'ckpt KB':>8}  engine/floor run by run")
    ok = [r for r in rows_out if r["engine"] and r["floor"]]
    for r in rows_out:
        e, fl = min(r["engine"], default=None), min(r["floor"], default=None)
        last = r["runs"][-1] if r["runs"] else {}
        print(f"{r['fragments']:>9} {fmt(fl, '8.3f')} {fmt(e, '9.3f')} {fmt(e / fl if e and fl else None, '9.2f')} "
              f"{fmt(1000 * e / r['fragments'] if e else None, '14.2f')} {last.get('commits', '-'):>7} "
              f"{fmt(last['ckpt_bytes'] / 1024 if last else None, '8.1f')}  {pairs(r['engine'], r['floor'])}")
    if len(ok) >= 2:
        xs = [r["fragments"] for r in ok]
        a, b = fit_line(xs, [min(r["engine"]) for r in ok])
        _, bf = fit_line(xs, [min(r["floor"]) for r in ok])
        marg = (min(ok[-1]["engine"]) - min(ok[-2]["engine"])) / (ok[-1]["fragments"] - ok[-2]["fragments"])
        print(f"fit (least squares over the best times): engine = {a * 1000:.0f} ms + {b * 1000:.2f} ms x fragments; "
              f"floor slope {bf * 1000:.2f} ms/fragment, so the engine's own beyond Lance's {1000 * (b - bf):.2f} ms; "
              f"marginal {ok[-2]['fragments']}->{ok[-1]['fragments']}: {marg * 1000:.2f} ms/fragment")
        print(f"target fixed cost <= 5 ms per fragment at {ok[-1]['fragments']} fragments: "
              f"{'PASS' if b * 1000 <= 5 else 'MISS'} (slope {b * 1000:.2f} ms)")
    print(f"load avg {measure.load_average()}")


def section_rows(args, work: Path, out: dict) -> None:
    rows_out = []
    for n in args.row_counts:
        t0 = time.perf_counter()
        template = data.ensure_template(work, n, args.row_fragments)
        log(f"table {n:,} rows / {args.row_fragments} fragments ready ({time.perf_counter() - t0:.1f}s)")
        rows_out.append({"rows": n, **floor_and_engine(template, work, args.repeat)})
    out["rows"] = rows_out
    head(f"Growth in rows: {args.row_fragments} fragments, trivial udf, {args.cpus} Ray CPUs, best of {args.repeat}",
         f"{'rows':>11} {'floor s':>8} {'engine s':>9} {'eng/floor':>9} {'engine rows/s':>13} "
         f"{'driver peak RSS MB':>18} {'its growth MB':>13} {'ckpt KB (files)':>16}  engine/floor run by run")
    for r in rows_out:
        e, fl = min(r["engine"], default=None), min(r["floor"], default=None)
        rss = max((k["peak_rss"] for k in r["runs"]), default=None)
        grew = max((k["peak_rss"] - k["start_rss"] for k in r["runs"]), default=None)
        last = r["runs"][-1] if r["runs"] else None
        ck = f"{last['ckpt_bytes'] / 1024:.1f} ({last['ckpt_files']})" if last else "-"
        print(f"{r['rows']:>11,} {fmt(fl, '8.3f')} {fmt(e, '9.3f')} {fmt(e / fl if e and fl else None, '9.2f')} "
              f"{fmt(r['rows'] / e if e else None, '13,.0f')} {fmt(rss / MB if rss else None, '18.0f')} "
              f"{fmt(grew / MB if grew is not None else None, '13.0f')} {ck:>16}  "
              f"{pairs(r['engine'], r['floor'])}")
    worst = max((min(r["engine"]) / min(r["floor"]) for r in rows_out if r["engine"] and r["floor"]), default=None)
    if worst is not None:
        print(f"target engine/floor <= 1.3 at every size: {'PASS' if worst <= 1.3 else 'MISS'} (worst {worst:.2f})")
    big = rows_out[-1] if rows_out and rows_out[-1]["runs"] else None
    if big:
        rss = max(k["peak_rss"] for k in big["runs"]) / MB
        print(f"target driver peak RSS <= 500 MB at {big['rows']:,} rows: {'PASS' if rss <= 500 else 'MISS'} ({rss:.0f} MB; "
              "the driver process's whole high-water mark during the run: Ray's driver, the imports and what the "
              f"floor run before it left resident included; the engine run's own growth at most "
              f"{max(k['peak_rss'] - k['start_rss'] for k in big['runs']) / MB:.0f} MB)")
    print(f"load avg {measure.load_average()}")


def section_skew(args, work: Path, out: dict) -> None:
    rows_out = []
    for label, skew in (("equal fragments", 1), (f"first fragment {args.skew}x", args.skew)):
        template = data.ensure_template(work, args.skew_rows, args.skew_fragments, skew=skew)
        sizes = [f.count_rows() for f in data.dataset(template).get_fragments()]
        keep: list = []
        # the udf alone is run in turns with the engine as well: it stands for the ideal under the same load
        t = in_turns(template, work, [("udf alone", lambda db: measure.udf_seconds(db, "heavy")),
                                      ("engine", engine_run("heavy", keep))], args.repeat, log)
        rows_out.append({"table": label, "skew": skew, "sizes": sizes, "udf": t["udf alone"], "engine": t["engine"],
                         "work": [k["work"] for k in keep]})
    out["skew"] = rows_out
    head(f"Skew: heavy udf, {args.skew_rows:,} rows in {args.skew_fragments} fragments, {args.cpus} Ray CPUs, "
         f"best of {args.repeat}; ideal = udf alone in one process / {args.cpus} CPUs; "
         f"work = the fragments' seconds in the workers (median), sizing = makespan / (work / CPUs), median",
         f"{'table':<22} {'fragment rows':<18} {'udf alone s':>11} {'ideal s':>8} {'engine s':>9} {'makespan/ideal':>14} "
         f"{'work s':>7} {'sizing':>6}  makespan/ideal run by run")
    for r in rows_out:
        u, e = min(r["udf"], default=None), min(r["engine"], default=None)
        ideal = u / args.cpus if u else None
        w = statistics.median(r["work"]) if r["work"] else None
        sizing = statistics.median([x / (y / args.cpus) for x, y in zip(r["engine"], r["work"]) if y]) if r["work"] else None
        sz = f"{max(r['sizes']):,} + {len(r['sizes']) - 1}x{min(r['sizes']):,}"
        print(f"{r['table']:<22} {sz:<18} {fmt(u, '11.3f')} {fmt(ideal, '8.3f')} {fmt(e, '9.3f')} "
              f"{fmt(e / ideal if e and ideal else None, '14.2f')} {fmt(w, '7.3f')} {fmt(sizing, '6.2f')}  "
              f"{pairs(r['engine'], [x / args.cpus for x in r['udf']])}")
    sk = rows_out[-1]
    if sk["engine"] and sk["udf"]:
        ratio = min(sk["engine"]) / (min(sk["udf"]) / args.cpus)
        print(f"target skewed makespan <= 1.15x ideal: {'PASS' if ratio <= 1.15 else 'MISS'} ({ratio:.2f}x)")
    print(f"load avg {measure.load_average()}")


def fmt(x: Optional[float], spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", default="fragments,rows,skew")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cpus", type=int, default=2, help="Ray CPUs of the engine")
    ap.add_argument("--frag-rows", type=int, default=1_000_000)
    ap.add_argument("--frag-counts", type=ints, default=[16, 256, 1024])
    ap.add_argument("--row-counts", type=ints, default=[1_000_000, 10_000_000, 50_000_000])
    ap.add_argument("--row-fragments", type=int, default=64)
    ap.add_argument("--skew-rows", type=int, default=1_000_000)
    ap.add_argument("--skew-fragments", type=int, default=16)
    ap.add_argument("--skew", type=int, default=10, help="rows of the first fragment over each other's")
    ap.add_argument("--workdir", default=os.environ.get("BENCH_WORKDIR", "/tmp/geneva-operator-bench"))
    ap.add_argument("--json", default=None, help="also write the measurements here")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(sections) - {"fragments", "rows", "skew"}
    if bad:
        ap.error(f"unknown sections {sorted(bad)}")
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)

    log(f"engine: local Ray start {start_engine_ray(args.cpus):.1f}s (untimed)")
    warm = data.ensure_template(work, 20_000, 2)
    for udf in ("trivial", "heavy"):
        in_turns(warm, work, [(f"warm-up {udf}", lambda db, u=udf: run_engine(db, u))], 1, log)
    print(f"Scale benchmark, {time.strftime('%Y-%m-%d %H:%M')}; host {os.cpu_count()} cores, load avg {measure.load_average()}")
    out: dict = {}
    for s in sections:
        {"fragments": section_fragments, "rows": section_rows, "skew": section_skew}[s](args, work, out)
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
