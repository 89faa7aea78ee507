"""kopf handlers of GenevaBackfill. Run the operator with

    kopf run -m geneva_operator.handlers --all-namespaces --liveness=http://0.0.0.0:8081/healthz

(`--standalone` for one replica without peering; `--peering=geneva-operator` for several
replicas, which needs kopf's KopfPeering CRD), or `python -m geneva_operator`.

Importing this package registers the handlers: startup.py (kopf settings, shared runtime,
/metrics), caches.py (the RayCluster index), columns.py (who claims which column) and
backfill.py (when to reconcile); runtime.py does one reconcile.
"""
from . import backfill, caches, columns, startup  # noqa: F401  (registration by import)
