"""`geneva-backfill`: run or validate a backfill from a manifest, on local Ray or a cluster."""
from __future__ import annotations

import argparse
import sys
from typing import Optional

from .errors import BackfillError, SpecError


def _cmd_run(args) -> int:
    from .manifest import load_spec
    from .progress import LogLineProgress, MultiProgress, TerminalProgress
    from .runner import run_backfill

    spec = load_spec(args.file)
    if args.concurrency:
        spec = spec.model_copy(update={"concurrency": args.concurrency})
    sinks = []
    if args.progress in ("bar", "both"):
        sinks.append(TerminalProgress())
    if args.progress in ("log", "both"):
        sinks.append(LogLineProgress())
    # run_backfill connects to Ray only once the spec, the table and (for a local Ray) the
    # udf's import have been checked: bad input fails in seconds, not after Ray's start.
    result = run_backfill(spec, progress=MultiProgress(*sinks), ray_address=args.ray_address, num_cpus=args.num_cpus)
    kept = result.rows_computed - result.rows_discarded
    resumed = result.rows_done - kept
    how = f"{kept} computed now" + (f", {resumed} from checkpoints" if resumed else "")
    if result.rows_discarded:
        how += f"; {result.rows_discarded} more computed and discarded, rewritten by another writer first"
    print(f"{spec.table.name}.{spec.column}: {result.rows_done} of {result.rows_total} rows written in "
          f"{result.fragments_done} fragments ({how}) in {result.seconds:.1f}s, {result.rows_per_second:,.0f} rows/s; "
          f"table version {result.read_version} -> {result.committed_version} ({result.commits} commits)")
    return 0


def _cmd_validate(args) -> int:
    from .manifest import load_spec
    from .validate import validate_spec

    spec = load_spec(args.file)
    r = validate_spec(spec, trial=not args.no_trial)
    print(f"ok: {r.table_uri} version {r.table_version} ({r.rows} rows); column {spec.column!r} "
          f"{'exists' if r.column_exists else 'will be created'} as {r.output_type}; "
          f"udf {spec.udf.function} " + (f"returned valid output for {r.trial_rows} rows" if r.trial_rows else "imported"))
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="geneva-backfill", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the backfill a manifest describes")
    run.add_argument("-f", "--file", required=True, help="GenevaBackfill manifest or bare spec (YAML/JSON)")
    run.add_argument("--ray-address", help="existing Ray cluster (default: start a local Ray)")
    run.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    run.add_argument("--concurrency", type=int, help="override spec.concurrency")
    run.add_argument("--progress", choices=["bar", "log", "both", "none"], default="bar" if sys.stderr.isatty() else "log")
    run.set_defaults(func=_cmd_run)
    val = sub.add_parser("validate", help="check a spec against its table and code without running it")
    val.add_argument("-f", "--file", required=True)
    val.add_argument("--no-trial", action="store_true", help="do not call the udf on sample rows")
    val.set_defaults(func=_cmd_validate)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BackfillError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if isinstance(e, SpecError) else 1
    except KeyboardInterrupt:
        print("interrupted: finished fragments are checkpointed; run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
