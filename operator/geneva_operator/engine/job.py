"""The Ray job entrypoint: `python -m geneva_operator.engine.job <base64 work>`.

Prints progress reports while it runs and a result report on success (the operator
parses both from the driver log, see api.job_contract); exits non-zero with a one-line
`error: spec.<field>: ...` on failure.
"""
from __future__ import annotations

import sys

from ..api.job_contract import decode_work
from .errors import BackfillError, SpecError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m geneva_operator.engine.job <base64url work>", file=sys.stderr)
        return 2
    try:
        work = decode_work(argv[0])
    except Exception as e:  # noqa: BLE001 - any decoding failure is a bad entrypoint
        print(f"error: cannot decode the work argument: {e}", file=sys.stderr)
        return 2
    from .progress import LogLineProgress
    from .runner import run_backfill

    try:
        # On a cluster RAY_ADDRESS is set by the job supervisor and run_backfill connects to it.
        result = run_backfill(work, progress=LogLineProgress())
    except BackfillError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2 if isinstance(e, SpecError) else 1
    print(result.to_report().line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
