"""What the operator keeps in memory to spare the API server, and why none of it is state.

At 200 active backfills, two thirds of the operator's requests were per-reconcile GETs of
the RayCluster and of the Ray token Secret, and the API server's latency (not ours) set the
status lag. Both are now read from memory:

* RayClusters come from a kopf index: one watch (list/watch on rayclusters.ray.io) keeps a
  copy of every RayCluster in the watched namespaces. Their pods likewise (why a cluster
  does not start is written on its pods only, see cluster/pods.py), but only Ray pods:
  the watch asks the API server for pods labelled ray.io/cluster (startup.py sets the
  selector), and only the few fields cluster/pods.py reads are kept. kopf runs no handler before the index
  holds the initial listing. The copy can lag our own writes by a watch event; every action
  taken on it is idempotent (create is create-or-get, the patch is recomputed from what is
  seen, delete ignores 404), so a lag costs at most one repeated request.
* Ray tokens are cached for `token_cache_seconds` after a successful read. Missing Secrets
  are never cached (a Secret created after the backfill is seen at once), and a token Ray
  refuses is re-read before the refusal counts (see Runtime._with_fresh_token), so a rotated
  Secret cannot fail a backfill on a stale copy.

* What the installed KubeRay supports (cluster/kuberay_features.py) is read from its
  RayCluster CRD at most every `kuberay_features_seconds`, and only while a reconcile needs
  it: a KubeRay upgraded (or downgraded) under a running operator is seen within that time.

Losing any of them (an operator restart) changes nothing but the number of requests: the
outcome depends only on the resource, the RayCluster, its CRD and Ray.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

import kopf

from ..cluster.kuberay_features import CRD_NAME, KubeRayFeatures, features_from_crd, unreadable
from ..cluster.pods import CLUSTER_LABEL, slim_pod
from ..kube import RAY_GROUP, RAY_PLURAL, RAY_VERSION, Unreadable

logger = logging.getLogger(__name__)


@kopf.index(RAY_GROUP, RAY_VERSION, RAY_PLURAL)
def ray_clusters(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every RayCluster by (namespace, name); its managedFields dropped (large, never read)."""
    obj = copy.deepcopy(dict(body))
    obj.get("metadata", {}).pop("managedFields", None)
    return {(namespace, name): obj}


# The same selector filters the watch server-side (startup.py) and the events client-side,
# should a kopf without server-side selectors deliver every pod.
RAY_POD_LABELS = {CLUSTER_LABEL: kopf.PRESENT}


@kopf.index("v1", "pods", labels=RAY_POD_LABELS)
def ray_pods(namespace: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
    """Every Ray pod by (namespace, its RayCluster's name), slimmed (cluster/pods.py)."""
    return {(namespace, labels[CLUSTER_LABEL]): slim_pod(body)}


class IndexedClusters:
    """RayCluster and Ray pod reads from the kopf indexes, with the contract of Kube's."""

    def __init__(self, index: Mapping[tuple[str, str], Any], pods: Optional[Mapping[tuple[str, str], Any]] = None):
        self._index = index
        self._pods = pods

    async def get_ray_cluster(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """The indexed object itself, not a copy (copying was a tenth of the operator's CPU at
        200 backfills): read-only, as every caller treats it."""
        store = self._index.get((namespace, name))
        for obj in store or ():
            return obj
        return None

    async def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        """The pods of RayCluster `cluster` (read-only); [] when none are indexed."""
        if self._pods is None:
            return []
        return list(self._pods.get((namespace, cluster)) or ())


class TokenCache:
    """Successful reads of Secret keys, each kept for `ttl` seconds (0: no caching)."""

    def __init__(self, read: Callable[[str, str, str], Awaitable[str]], ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self._read, self._ttl, self._clock = read, ttl, clock
        self._values: dict[tuple[str, str, str], tuple[str, float]] = {}

    async def get(self, namespace: str, name: str, key: str) -> str:
        """The value, from memory when read less than `ttl` ago; raises what `read` raises."""
        k = (namespace, name, key)
        cached = self._values.get(k)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        value = await self._read(namespace, name, key)
        now = self._clock()
        # Expired entries go on each read from the API, so Secrets no backfill names any
        # more do not stay in memory.
        self._values = {k2: v for k2, v in self._values.items() if now < v[1]}
        if self._ttl > 0:
            self._values[k] = (value, now + self._ttl)
        return value

    def forget(self, namespace: str, name: str, key: str) -> None:
        self._values.pop((namespace, name, key), None)

    def __len__(self) -> int:
        return len(self._values)


class KubeRayFeaturesCache:
    """The installed KubeRay's features, from `read(CRD_NAME)` at most once every `ttl` seconds.
    A CRD the operator may not read is the oldest supported KubeRay's features (kept for `ttl`
    too: a grant is seen then); a transient failure keeps the last features, or raises when
    there are none yet (the reconcile is retried)."""

    def __init__(self, read: Callable[[str], Awaitable[Mapping[str, Any]]], ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self._read, self._ttl, self._clock = read, ttl, clock
        self._features: Optional[KubeRayFeatures] = None
        self._expires = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> KubeRayFeatures:
        if self._features is not None and self._clock() < self._expires:
            return self._features
        async with self._lock:  # one read for every reconcile waiting on it
            if self._features is not None and self._clock() < self._expires:
                return self._features
            try:
                features = features_from_crd(await self._read(CRD_NAME))
            except Unreadable as e:
                features = unreadable(str(e))
            except Exception:
                if self._features is None:
                    raise
                logger.warning("could not re-read CustomResourceDefinition %s; keeping %s", CRD_NAME,
                               self._features.describe(), exc_info=True)
                features = self._features
            if features != self._features:
                logger.info("installed KubeRay: %s", features.describe())
            self._features, self._expires = features, self._clock() + self._ttl
            return features
