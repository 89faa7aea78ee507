"""In-process fakes of the operator's two boundaries: Ray 2.60's Job API (aiohttp server)
and the Kubernetes calls of geneva_operator.kube (in-memory)."""
from __future__ import annotations

import asyncio
import copy
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from geneva_operator.kube import SecretProblem, StatusConflict, StatusWritten, Unreadable

TOKEN = "s3cr3t-t0ken-value-0123456789"


class FakeRay:
    def __init__(self) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[str]] = {}
        self.posts = 0
        self.hide_next_get = False  # simulate a racing submitter: GET misses, POST collides
        self.down_for_posts = 0  # the next so many submissions answer 503 (a head still starting)
        self.tails_open = 0
        self.jobs_end: Optional[asyncio.Event] = None  # set: tails stay open until it is set, as for running jobs
        self.get_job_hook: Optional[Callable[[str], None]] = None  # runs inside each job GET (a race's other side)

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
            header = request.headers.get("Authorization", "")
            if not header:
                return web.Response(status=401, text="Unauthorized: Missing authentication token")
            if header != f"Bearer {TOKEN}":
                return web.Response(status=403, text="Forbidden: Invalid authentication token")
            return await handler(request)

        app = web.Application(middlewares=[auth])
        app.router.add_post("/api/jobs/", self.submit)
        app.router.add_get("/api/jobs/{id}", self.get)
        app.router.add_post("/api/jobs/{id}/stop", self.stop)
        app.router.add_get("/api/jobs/{id}/logs", self.get_logs)
        app.router.add_get("/api/jobs/{id}/logs/tail", self.tail)
        return app

    async def submit(self, request: web.Request) -> web.Response:
        self.posts += 1
        if self.down_for_posts:
            self.down_for_posts -= 1
            return web.Response(status=503, text="Service Unavailable")
        body = await request.json()
        if not isinstance(body.get("entrypoint"), str):
            return web.Response(status=400, text="TypeError: entrypoint must be a string")
        sid = body["submission_id"]
        if sid in self.jobs:
            return web.Response(status=500, text=f"Traceback...\nValueError: Job with submission_id {sid} already exists.")
        self.jobs[sid] = {"submission_id": sid, "status": "PENDING", "message": "", "entrypoint": body["entrypoint"],
                          "runtime_env": body.get("runtime_env"), "metadata": body.get("metadata") or {}}
        return web.json_response({"job_id": sid, "submission_id": sid})

    async def get(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if self.get_job_hook is not None:
            self.get_job_hook(sid)
        if sid not in self.jobs or self.hide_next_get:
            self.hide_next_get = False
            return web.Response(status=404, text=f"Job {sid} does not exist")
        return web.json_response(self.jobs[sid])

    async def stop(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.jobs:
            return web.Response(status=404, text=f"Job {sid} does not exist")
        running = self.jobs[sid]["status"] in ("PENDING", "RUNNING")
        if running:
            self.jobs[sid]["status"] = "STOPPED"
        return web.json_response({"stopped": running})

    async def get_logs(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if sid not in self.jobs:
            return web.Response(status=404, text=f"Job {sid} does not exist")
        return web.json_response({"logs": "".join(self.logs.get(sid, []))})

    async def tail(self, request: web.Request) -> web.StreamResponse:
        sid = request.match_info["id"]
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        for chunk in self.logs.get(sid, []):
            await ws.send_str(chunk)
        self.tails_open += 1
        try:
            if self.jobs_end is not None:
                await self.jobs_end.wait()
        finally:
            self.tails_open -= 1
        await ws.close()
        return ws


def ray_cluster_crd(*fields: str) -> dict[str, Any]:
    """A rayclusters.ray.io CRD whose v1 schema has just these dotted fields (e.g.
    "spec.gcsFaultToleranceOptions"): the shape KubeRay's CRDs have, without their 900 kB."""
    schema: dict[str, Any] = {"type": "object", "properties": {"spec": {"type": "object", "properties": {}},
                                                               "status": {"type": "object", "properties": {}}}}
    for field in fields:
        node = schema
        for key in field.split("."):
            node = node.setdefault("properties", {}).setdefault(key, {"type": "object"})
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "rayclusters.ray.io"},
            "spec": {"group": "ray.io", "versions": [{"name": "v1", "served": True, "storage": True,
                                                      "schema": {"openAPIV3Schema": schema}}]}}


# KubeRay 1.6's markers (cluster/kuberay_features.py), and 1.1's: none.
NEWEST_CRD = ray_cluster_crd("status.conditions", "spec.gcsFaultToleranceOptions", "spec.autoscalerOptions.version",
                             "spec.authOptions", "spec.upgradeStrategy")
OLDEST_CRD = ray_cluster_crd()


class FakeKube:
    """Same contract as geneva_operator.kube.Kube (404 -> None/False, 409 -> get)."""

    def __init__(self) -> None:
        # The GenevaBackfills' resourceVersions, and the status patches the API server took.
        self.versions: dict[tuple[str, str], int] = {}
        self.statuses: dict[tuple[str, str], dict[str, Any]] = {}  # what the status patches left
        self.status_patches: list[dict[str, Any]] = []
        self.clusters: dict[tuple[str, str], dict[str, Any]] = {}
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.pods: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (namespace, cluster) -> pods
        self.calls: list[str] = []
        # The GenevaBackfills as their users wrote them (get_backfill adds version and status);
        # racing: someone writes each one again right after every read of it.
        self.backfills: dict[tuple[str, str], dict[str, Any]] = {}
        self.racing = False
        self.slow_delete = False  # a delete only marks the cluster (KubeRay removing its pods)
        self.crd: Optional[dict[str, Any]] = NEWEST_CRD  # None: the operator may not read it (403)

    def index(self) -> "FakeIndex":
        """What kopf's `ray_clusters` index would hold: every cluster, as of now."""
        return FakeIndex(self)

    def pod_index(self) -> "FakePodIndex":
        """What kopf's `ray_pods` index would hold: every Ray pod by its cluster, as of now."""
        return FakePodIndex(self)

    async def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        self.calls.append(f"pods {cluster}")
        return copy.deepcopy(self.pods.get((namespace, cluster), []))

    async def get_ray_cluster(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        self.calls.append(f"get {name}")
        found = self.clusters.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    async def create_ray_cluster(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"create {body['metadata']['name']}")
        key = (namespace, body["metadata"]["name"])
        self.clusters.setdefault(key, copy.deepcopy(body))
        return copy.deepcopy(self.clusters[key])

    async def patch_ray_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(f"patch {name}")
        return self.clusters[(namespace, name)]

    async def delete_ray_cluster(self, namespace: str, name: str) -> bool:
        self.calls.append(f"delete {name}")
        if self.slow_delete and (namespace, name) in self.clusters:
            self.clusters[(namespace, name)]["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
            return True
        return self.clusters.pop((namespace, name), None) is not None

    async def patch_backfill_status(self, namespace: str, name: str, resource_version: str,
                                    status: dict[str, Any]) -> StatusWritten:
        current = self.versions.setdefault((namespace, name), 1)
        if resource_version != str(current):
            raise StatusConflict(f"GenevaBackfill {namespace}/{name} changed since resourceVersion {resource_version}")
        self.status_patches.append(copy.deepcopy(status))
        if status:  # a patch that changes nothing leaves the version as it is
            self.versions[(namespace, name)] = current + 1
        merged = {**self.statuses.get((namespace, name), {}), **copy.deepcopy(status)}
        self.statuses[(namespace, name)] = {k: v for k, v in merged.items() if v is not None}
        return StatusWritten(str(self.versions[(namespace, name)]), copy.deepcopy(self.statuses[(namespace, name)]))

    async def get_backfill(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        self.calls.append(f"get backfill {name}")
        stored = self.backfills.get((namespace, name))
        if stored is None:
            return None
        found = copy.deepcopy(stored)
        found["metadata"]["resourceVersion"] = str(self.versions.setdefault((namespace, name), 1))
        found["status"] = copy.deepcopy(self.statuses.get((namespace, name), stored.get("status") or {}))
        if self.racing:
            self.versions[(namespace, name)] += 1
        return found

    async def read_crd(self, name: str) -> dict[str, Any]:
        self.calls.append(f"crd {name}")
        if self.crd is None:
            raise Unreadable(f"403 Forbidden: get customresourcedefinitions/{name}")
        return copy.deepcopy(self.crd)

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        self.calls.append(f"secret {name}")
        data = self.secrets.get((namespace, name))
        if data is None:
            raise SecretProblem(f"Secret {name} not found in namespace {namespace}", may_clear=True)
        if key not in data:
            raise SecretProblem(f"Secret {name} has no key {key!r}")
        return data[key]

    def make_ready(self, namespace: str, name: str) -> None:
        self.clusters[(namespace, name)]["status"] = {
            "state": "ready",
            "conditions": [{"type": "HeadPodReady", "status": "True"}, {"type": "RayClusterProvisioned", "status": "True"}],
        }


class FakeIndex:
    """kopf's Index contract as caches.IndexedClusters uses it: key -> a store of objects."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        found = self._kube.clusters.get(key)
        return [found] if found is not None else default


class FakePodIndex:
    """kopf's Index contract for `ray_pods`: (namespace, cluster) -> a store of pods."""

    def __init__(self, kube: FakeKube) -> None:
        self._kube = kube

    def get(self, key: tuple[str, str], default: Any = None) -> Any:
        return self._kube.pods.get(key) or default
