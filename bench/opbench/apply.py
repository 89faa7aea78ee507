"""Creates a list of custom objects, in order, from a process of its own.

The bench process also runs the Ray stand-in and two watches; during our burst the operator
keeps both busy (job polls, a status event per patch), and a create loop sharing their
interpreter waits for the GIL between POSTs. Bursts are applied from here instead, so that
ours and the peer's are applied the same way whatever else the bench is doing.

    python -m bench.opbench.apply KUBECONFIG BODIES.json [--dry-run]
        ->  {"name": instant the POST was sent, ...}

--dry-run sends each POST with dryRun=All: the API server runs admission and validation (the
schema, CEL rules) and stores nothing, so no controller reacts: the cost of the CRD alone.
"""
from __future__ import annotations

import json
import sys
import time


def main(kubeconfig: str, path: str, *flags: str) -> None:
    from kubernetes import client, config

    custom = client.CustomObjectsApi(config.new_client_from_config(config_file=kubeconfig))
    sent: dict[str, float] = {}
    for body in json.loads(open(path).read()):
        group, version = body["apiVersion"].split("/")
        plural = body["kind"].lower() + "s"
        meta = body["metadata"]
        sent[meta["name"]] = time.time()
        custom.create_namespaced_custom_object(group, version, meta["namespace"], plural, body,
                                               **({"dry_run": "All"} if "--dry-run" in flags else {}))
    json.dump(sent, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:])
