"""The few Kubernetes API calls the operator makes itself, as coroutines.

Decision: the official synchronous `kubernetes` client, each call in a worker thread
(`asyncio.to_thread`), so kopf's event loop never blocks. kubernetes_asyncio is not a
dependency, kopf's own API client is private, and these calls are few and short (a handful
per backfill: reconciles read RayClusters and tokens from memory, see handlers/caches.py),
so a thread per call in Python's default executor costs nothing that matters. Events go
through `kopf.event`; of the GenevaBackfill, this module only writes the status (see
patch_backfill_status: kopf's own status patch cannot carry a resourceVersion).

Permissions used here: genevabackfills get (a fresh copy after a refused status patch),
genevabackfills/status patch; rayclusters.ray.io get/create/patch/delete
(list/watch: the index in handlers/caches.py); pods list (watch: the Ray pod index); secrets get;
get on the one CustomResourceDefinition rayclusters.ray.io (what the installed KubeRay supports).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any, NamedTuple, Optional

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from .api.models import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

# The synchronous client logs every response body at DEBUG ("response body: ..."), Secrets
# included: with the operator at debug level (kopf run --verbose/--debug) the Ray token would
# land in its log. Keep that logger above DEBUG whatever the root level is.
logging.getLogger("kubernetes.client.rest").setLevel(logging.INFO)

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"


class StatusWritten(NamedTuple):
    """What a status patch left: the resource's new resourceVersion and its whole status."""
    version: str
    status: dict[str, Any]


class StatusConflict(Exception):
    """The resource changed since the resourceVersion a status patch was made for (HTTP 409)."""


class Unreadable(Exception):
    """The API server refuses (RBAC) or lacks an object the operator reads for information."""


class SecretProblem(Exception):
    """The referenced Secret or key is missing (a user error, reported on the resource).
    `may_clear`: the Secret does not exist (yet); the other problems need an edit."""

    def __init__(self, message: str, may_clear: bool = False):
        super().__init__(message)
        self.may_clear = may_clear


def load_config(pool_size: int = 10) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else $KUBECONFIG / ~/.kube/config.
    `pool_size`: HTTP connections kept, one per API thread (GENEVA_API_THREADS); with fewer,
    urllib3 drops and reopens connections under load ("Connection pool is full")."""
    try:
        config.load_incluster_config()
    except ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    return client.ApiClient(cfg)


def is_transient(e: BaseException) -> bool:
    """API errors worth retrying on the next reconcile (conflicts, throttling, server trouble)."""
    if not isinstance(e, ApiException):
        return True  # transport errors
    return e.status in (409, 429) or e.status >= 500 or e.status == 0


class Kube:
    def __init__(self, api_client: client.ApiClient):
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self._extensions = client.ApiextensionsV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)

    async def may(self, verb: str, resource: str, group: str = "") -> bool:
        """Whether this identity may `verb` `resource` cluster-wide (a SelfSubjectAccessReview,
        which every authenticated user may create)."""
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource, group=group)))
        resp = await asyncio.to_thread(self._authz.create_self_subject_access_review, review)
        return bool(resp.status and resp.status.allowed)

    # -- KubeRay's RayCluster CRD

    async def read_crd(self, name: str) -> dict[str, Any]:
        """CustomResourceDefinition `name` as a plain dict (the client's models of a 900 kB
        schema would take seconds to build). Unreadable on 401/403/404."""
        try:
            resp = await asyncio.to_thread(self._extensions.read_custom_resource_definition, name, _preload_content=False)
        except ApiException as e:
            if e.status in (401, 403, 404):
                raise Unreadable(f"{e.status} {e.reason}: get customresourcedefinitions/{name}") from None
            raise
        return json.loads(resp.data)

    # -- RayClusters

    async def get_ray_cluster(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        try:
            return await asyncio.to_thread(
                self._custom.get_namespaced_custom_object, RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name
            )
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    async def create_ray_cluster(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create-or-get: a 409 (an earlier reconcile, maybe of a previous operator process,
        created it) returns the existing object."""
        try:
            return await asyncio.to_thread(
                self._custom.create_namespaced_custom_object, RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, body
            )
        except ApiException as e:
            if e.status != 409:
                raise
            existing = await self.get_ray_cluster(namespace, body["metadata"]["name"])
            if existing is None:  # deleted in between: let the next reconcile create it
                raise
            return existing

    async def patch_ray_cluster(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        # A JSON merge patch (the client's default for custom objects); it carries the
        # resourceVersion, so a concurrent writer makes it fail with 409 instead of losing data.
        return await asyncio.to_thread(
            self._custom.patch_namespaced_custom_object, RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, patch
        )

    async def delete_ray_cluster(self, namespace: str, name: str) -> bool:
        """False if it was already gone. Foreground: its pods go before it disappears."""
        try:
            await asyncio.to_thread(
                self._custom.delete_namespaced_custom_object,
                RAY_GROUP,
                RAY_VERSION,
                namespace,
                RAY_PLURAL,
                name,
                body=client.V1DeleteOptions(propagation_policy="Foreground"),
            )
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    # -- the GenevaBackfill's status

    async def patch_backfill_status(self, namespace: str, name: str, resource_version: str,
                                    status: dict[str, Any]) -> StatusWritten:
        """Merge `status` (None deletes a key) into the status of the resource at
        `resource_version`, and return its new resourceVersion and status. The patch carries that version,
        so the API server refuses it (StatusConflict) when the resource has changed since: a
        status decided on an outdated copy is never written. `status` may be empty: then the
        call only checks that the copy is current."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status}
        try:
            obj = await asyncio.to_thread(
                self._custom.patch_namespaced_custom_object_status, GROUP, VERSION, namespace, PLURAL, name, body
            )
        except ApiException as e:
            if e.status == 409:
                raise StatusConflict(f"GenevaBackfill {namespace}/{name} changed since resourceVersion "
                                     f"{resource_version}") from None
            raise
        return StatusWritten(obj["metadata"]["resourceVersion"], obj.get("status") or {})

    async def get_backfill(self, namespace: str, name: str) -> Optional[dict[str, Any]]:
        """The resource as the API server has it now (a quorum read, not a watch's copy);
        None when it is gone."""
        try:
            return await asyncio.to_thread(self._custom.get_namespaced_custom_object, GROUP, VERSION, namespace,
                                           PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    # -- Ray pods (without the operator's index: tests, one-off reads)

    async def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        """The pods KubeRay made for RayCluster `cluster`, as plain dicts (camelCase)."""
        pods = await asyncio.to_thread(self._core.list_namespaced_pod, namespace, label_selector=f"ray.io/cluster={cluster}")
        return [self._core.api_client.sanitize_for_serialization(p) for p in pods.items]

    # -- Secrets

    async def read_secret_key(self, namespace: str, name: str, key: str) -> str:
        """The decoded value. SecretProblem if the Secret or the key is missing; the value is
        never logged or put in an exception."""
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as e:
            if e.status == 404:
                raise SecretProblem(f"Secret {name} not found in namespace {namespace}", may_clear=True) from None
            if e.status == 403:
                raise SecretProblem(f"the operator may not read Secret {name} (RBAC)") from None
            raise
        data = secret.data or {}
        if key not in data:
            raise SecretProblem(f"Secret {name} has no key {key!r}")
        value = base64.b64decode(data[key]).decode().strip()
        if not value:
            raise SecretProblem(f"Secret {name} key {key!r} is empty")
        return value
