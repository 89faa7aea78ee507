"""`python -m geneva_operator`: the operator, same as
`kopf run -m geneva_operator.handlers --all-namespaces --liveness=http://0.0.0.0:8081/healthz`.

Watches GENEVA_NAMESPACES (comma-separated; empty: all namespaces). Peering: `--standalone`
(one replica) or `--peering NAME` (several replicas, needs kopf's KopfPeering CRD);
without either, kopf uses peering if its CRD exists.
"""
from __future__ import annotations

import argparse
import logging

import kopf


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m geneva_operator")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--standalone", action="store_true", help="no peering (single replica)")
    mode.add_argument("--peering", metavar="NAME", help="KopfPeering/ClusterKopfPeering name (several replicas)")
    parser.add_argument("--liveness", default="http://0.0.0.0:8081/healthz", help="liveness endpoint URL ('' disables)")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import geneva_operator.handlers  # noqa: F401  (registers the handlers)
    from .settings import OperatorSettings

    namespaces = OperatorSettings().namespaces
    kopf.run(
        standalone=True if args.standalone else None,
        peering_name=args.peering,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=args.liveness or None,
    )


if __name__ == "__main__":
    main()
