"""CLI: python -m tests.controlplane {build,up,down,status,images} [--state-dir DIR]

  build   build/reuse the pinned binaries (tests/controlplane/build.sh)
  up      start a control plane with one real node (root; see node.py) in the background
          and print `export KUBECONFIG=...`; a no-op if one is already running there.
          --kwok: kwok nodes instead (pods run nothing; no root needed)
          --kuberay VERSION: that KubeRay of versions.env KUBERAY_VERSIONS (default the newest)
  down    stop it, remove every trace of its node on the host, remove its state dir
  status  exit 0 and print the kubeconfig path if it is running and ready
  images  build the project's images (tests/imagebuild) and import them into the
          running control plane's node
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import hostnet
from .harness import ControlPlane, build, default_state_dir, remove_state_dir


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.controlplane", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["build", "up", "down", "status", "images"])
    ap.add_argument("--kwok", action="store_true", help="up: kwok nodes instead of a real node")
    ap.add_argument("--kuberay", default=None, metavar="VERSION",
                    help="up: this KubeRay of versions.env KUBERAY_VERSIONS (default: the newest)")
    ap.add_argument("--state-dir", default=None,
                    help=f"cluster state dir (default: $GENEVA_CLUSTER_STATE or {default_state_dir()})")
    ap.add_argument("components", nargs="*", help="build: components to build (default all)")
    args = ap.parse_args(argv)
    state_dir = args.state_dir or default_state_dir()

    if args.command == "build":
        return build(args.components, check=False).returncode

    existing = None
    try:
        existing = ControlPlane.attach(state_dir)
    except (FileNotFoundError, ValueError, KeyError):
        pass

    if args.command == "status":
        if existing and existing.running() and existing.healthy():
            print(existing.kubeconfig)
            return 0
        print("not running", file=sys.stderr)
        return 1

    if args.command == "images":
        from tests.imagebuild import build_all, import_all

        build_all()
        if existing is None or not existing.running() or existing.node is None:
            print("images built; no control plane with a real node is running: they are imported "
                  "when one starts", file=sys.stderr)
            return 0
        import_all(str(existing.node.containerd_socket))
        print(f"images imported into the node of {state_dir}", file=sys.stderr)
        return 0

    if args.command == "down":
        if existing is None:
            print(f"no control plane state in {state_dir}", file=sys.stderr)
            remove_state_dir(state_dir)  # logs of a failed `up`, if any
            if os.geteuid() == 0:  # a node killed without a teardown still left host state
                for line in hostnet.clean_host():
                    print(f"removed: {line}", file=sys.stderr)
            return 0
        existing.stop(remove_state=True)
        print(f"stopped; removed {state_dir}", file=sys.stderr)
        return 0

    # up
    if existing is not None:
        if existing.running() and existing.healthy():
            print(f"already running (state dir {state_dir})", file=sys.stderr)
            print(f"export KUBECONFIG={existing.kubeconfig}")
            return 0
        existing.stop(remove_state=True)  # stale or half-dead: start afresh
    if not remove_state_dir(state_dir):
        print(f"{state_dir} exists and is not a control-plane state dir; refusing to use it",
              file=sys.stderr)
        return 2
    t0 = time.monotonic()
    cp = ControlPlane(state_dir, real_node=not args.kwok, kuberay_version=args.kuberay)
    try:
        cp.start()
    except Exception as exc:  # noqa: BLE001
        print(f"control plane failed to start: {exc}\nlogs: {cp.logs}", file=sys.stderr)
        return 1
    print(f"control plane up in {time.monotonic() - t0:.1f}s; apiserver https://{cp.host_ip}:"
          f"{cp.ports['apiserver']}; step timings {cp.timings}; logs in {cp.logs}; stop with: python -m tests.controlplane down"
          + (f" --state-dir {args.state_dir}" if args.state_dir else ""), file=sys.stderr)
    print(f"export KUBECONFIG={cp.kubeconfig}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
