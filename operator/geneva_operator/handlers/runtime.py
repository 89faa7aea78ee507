"""One reconcile of a GenevaBackfill: observe -> lifecycle.decide -> execute the actions.

The kopf handlers (backfill.py) only pick *when* to reconcile; this module observes, and
actions.py carries the decision out (status.py: the status patch; tokens.py: the Ray token). Observation is limited to what
`lifecycle.needs` asks for, so finished resources cost no API requests.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any, Mapping, Optional, Protocol

import aiohttp
import kopf

from .. import lifecycle
from ..api.job_contract import last_report
from ..api.models import GROUP, KIND, VERSION, BackfillSpec
from ..cluster import build_ray_cluster, dashboard_url, in_place_patch, needs_recreate, ray_cluster_name
from ..cluster.kuberay_features import KubeRayFeatures, unsupported
from ..cluster.pods import pod_problem
from ..cluster.readiness import head_image, ray_cluster_ready
from ..kube import Kube
from ..api.models import ActionError
from ..lifecycle import ClusterView, ColumnHeld, Decision, JobUnknown, JobView, Observed, RayAuthRefused, kuberay_problem
from ..rayjobs import BearerToken, LogFollower, RayJobClient, RayJobError, RayUnauthorized
from ..settings import OperatorSettings
from . import actions
from .caches import KubeRayFeaturesCache
from .schedule import Schedule
from .tokens import RayTokens
from .status import parse_status, spec_of

logger = logging.getLogger(__name__)


class ClusterReader(Protocol):
    async def get_ray_cluster(self, namespace: str, name: str) -> Optional[dict[str, Any]]: ...

    async def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]: ...



class Runtime:
    """Shared by all handlers of one operator process (kopf memo)."""

    def __init__(self, settings: OperatorSettings, kube: Kube, session: aiohttp.ClientSession):
        self.settings = settings
        self.kube = kube
        self.session = session
        self.tokens = RayTokens(kube.read_secret_key, settings)
        self.schedule = Schedule()  # when each resource is reconciled next (schedule.py)
        self.following: set[str] = set()  # uids whose job log is followed (the progress write budget)
        self.kuberay = KubeRayFeaturesCache(kube.read_crd, settings.kuberay_features_seconds)
        self.post_event = kopf.event  # replaceable in tests (kopf.event needs a running operator)

    # -- observe

    def _base(self, body: Mapping[str, Any], deleting: bool, memo: Any = None) -> Observed:
        """The facts in the resource itself (no API calls)."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        spec, spec_error = spec_of(meta, body.get("spec") or {}, memo)
        existing = spec.existing_cluster if spec is not None else None
        cluster_name = existing.name if existing is not None else ray_cluster_name(name)
        return Observed(
            name=name,
            namespace=namespace,
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=spec,
            status=parse_status(body.get("status") or {}),
            now=lifecycle.utcnow(),
            cluster_name=cluster_name,
            dashboard_url=dashboard_url(self.settings.dashboard_url_template, cluster_name=cluster_name, namespace=namespace),
            deleting=deleting,
            spec_error=spec_error,
            default_image=self.settings.default_ray_image,
        )

    async def observe(
        self, body: Mapping[str, Any], memo: Any, deleting: bool = False, clusters: Optional[ClusterReader] = None,
        column: Optional[ColumnHeld] = None,
    ) -> tuple[Observed, Optional[BearerToken]]:
        """What `decide` needs (and only that: see lifecycle.needs), plus the Ray token.
        RayClusters are read from `clusters` (the operator's watch cache), else with a GET.
        `column`: the backfill holding this backfill's column, if one does (handlers/columns.py)."""
        observed = self._base(body, deleting, memo)
        if column is not None and not deleting:
            observed = replace(observed, column=column)
        spec = observed.spec
        needs = lifecycle.needs(spec, observed.status, observed.now, deleting)
        token: Optional[BearerToken] = None
        if spec is not None and (needs.inputs or needs.job_id or deleting):
            token, missing = await self.tokens.get(observed.namespace, spec)
            if missing is not None and not deleting:
                observed = replace(observed, secret=missing)
        if spec is not None and needs.inputs and not deleting:
            observed = replace(observed, kuberay=kuberay_problem(unsupported(spec, await self.kuberay.get())))
        if needs.cluster and spec is not None:
            cluster = await self._observe_cluster(observed, spec, clusters or self.kube, memo)
        else:
            cluster = None
        job = None
        if needs.job_id and cluster is not None and cluster.ready and lifecycle.blocking(observed, observed.status) is None:
            job, refused = await self._observe_job(observed, needs.job_id, token, memo)
            if refused is not None:
                observed = replace(observed, ray_auth=refused)
        return replace(observed, cluster=cluster, job=job), token

    async def observe_for_logs(self, body: Mapping[str, Any]) -> tuple[Observed, Optional[BearerToken]]:
        """Just enough to talk to the job's Ray cluster (dashboard URL and token)."""
        observed = self._base(body, deleting=False)
        if observed.spec is None:
            raise RayJobError("spec does not validate")
        token, problem = await self.tokens.get(observed.namespace, observed.spec)
        if problem is not None:
            raise RayJobError(problem.message)
        return observed, token

    def _owner(self, observed: Observed) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": observed.name, "uid": observed.uid}

    async def desired_cluster(self, observed: Observed, features: Optional[KubeRayFeatures] = None) -> dict[str, Any]:
        return build_ray_cluster(
            name=observed.cluster_name,
            namespace=observed.namespace,
            owner=self._owner(observed),
            spec=observed.spec,
            settings=self.settings,
            features=features if features is not None else await self.kuberay.get(),
        )

    async def _observe_cluster(self, observed: Observed, spec: BackfillSpec, clusters: ClusterReader,
                               memo: Any = None) -> ClusterView:
        obj = await clusters.get_ray_cluster(observed.namespace, observed.cluster_name)
        if obj is None:
            return ClusterView(exists=False)
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        owned = spec.existing_cluster is None and any(r.get("uid") == observed.uid for r in refs)
        deleting = bool(obj.get("metadata", {}).get("deletionTimestamp"))
        pods = [] if observed.deleting else await clusters.ray_pods(observed.namespace, observed.cluster_name)
        features = await self.kuberay.get()
        ready, message = ray_cluster_ready(obj, features, pods)
        patch, recreate = None, ()
        problem = None if observed.deleting else pod_problem(pods)
        # A spec this KubeRay cannot serve has no desired cluster (the backfill fails on it).
        if owned and not observed.deleting and observed.kuberay is None:
            patch, recreate = await self._cluster_drift(observed, obj, features, memo)
        return ClusterView(exists=True, ready=ready, owned=owned, deleting=deleting, message=message, patch=patch,
                           recreate=recreate, image=head_image(obj), pod_problem=problem)

    async def _cluster_drift(self, observed: Observed, obj: Mapping[str, Any], features: KubeRayFeatures,
                             memo: Any) -> tuple[Optional[dict[str, Any]], tuple[str, ...]]:
        """How our RayCluster `obj` differs from what the spec asks: the in-place patch and the
        fields that need a recreate. Remembered per (generation, the cluster's resourceVersion,
        KubeRay's features), which is all it depends on: building the desired cluster and
        comparing took a sixth of the operator's CPU at 1000 backfills, one per reconcile."""
        key = (observed.generation, obj.get("metadata", {}).get("resourceVersion"), features)
        known = memo.get("cluster_drift") if memo is not None else None
        if known is not None and known[0] == key and key[1] is not None:
            return known[1], known[2]
        desired = await self.desired_cluster(observed, features)
        patch, recreate = in_place_patch(obj, desired), tuple(needs_recreate(obj, desired))
        if memo is not None:
            memo["cluster_drift"] = (key, patch, recreate)
        return patch, recreate

    def ray(self, observed: Observed, token: Optional[BearerToken]) -> RayJobClient:
        return RayJobClient(
            observed.dashboard_url, token=token, session=self.session, timeout=self.settings.http_timeout_seconds
        )

    async def _observe_job(
        self, observed: Observed, job_id: str, token: Optional[BearerToken], memo: Any
    ) -> tuple[JobView, Optional[RayAuthRefused]]:
        async def look(token: Optional[BearerToken]) -> JobView:
            ray = self.ray(observed, token)
            info = await ray.get_job(job_id)
            if info is None:
                return JobView(job_id, JobUnknown.NOT_FOUND)
            state = info.state or JobUnknown.UNREACHABLE
            if state.terminal:
                # One read of the whole log at the end: the final result line and the tail.
                logs = await ray.get_logs(job_id) or ""
                return JobView(job_id, state, info.message, last_report(logs), logs)
            follower: Optional[LogFollower] = memo.get("follower") if memo is not None else None
            progress = follower.progress if follower is not None and follower.submission_id == job_id else None
            return JobView(job_id, state, info.message, progress)

        try:
            return await self.tokens.with_fresh(observed.namespace, observed.spec, token, look), None
        except RayUnauthorized as e:
            return JobView(job_id, JobUnknown.UNREACHABLE, str(e)), RayAuthRefused(str(e))
        except RayJobError as e:
            return JobView(job_id, JobUnknown.UNREACHABLE, str(e)), None

    # -- act

    async def fresh_token(self, observed: Observed) -> Optional[BearerToken]:
        return await self.tokens.fresh(observed.namespace, observed.spec)

    async def execute(self, observed: Observed, decision: Decision, token: Optional[BearerToken], body: Any) -> Optional[ActionError]:
        """See actions.execute."""
        return await actions.execute(self, observed, decision, token, body)
