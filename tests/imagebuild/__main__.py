"""python -m tests.imagebuild build [--only NAME] | import --address SOCKET"""

from __future__ import annotations

import argparse
import sys
import time

from tests.imagebuild import build_all, import_all


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.imagebuild")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the operator, ray-worker and pause images into OCI archives")
    b.add_argument("--only", choices=["operator", "ray-worker", "pause"])
    i = sub.add_parser("import", help="import every built archive into a containerd (namespace k8s.io)")
    i.add_argument("--address", required=True, help="containerd socket")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    if args.cmd == "build":
        for img in build_all(args.only, log=lambda s: print(s, file=sys.stderr)):
            state = "cached" if img.cached else f"built ({len(img.rebuilt_steps)} steps rebuilt)"
            size = img.archive.stat().st_size / 2**20
            print(f"{img.archive}\t{img.ref}\t{state}\t{size:.0f} MiB\t{img.seconds}s")
    else:
        for imp in import_all(args.address, log=lambda s: print(s, file=sys.stderr)):
            print(f"{imp.ref}\t{imp.digest}\t{'already present' if imp.skipped else 'imported'}")
    print(f"total {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
