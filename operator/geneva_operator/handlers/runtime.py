"""One reconcile of a GenevaBackfill: observe -> lifecycle.decide -> execute the actions.

The kopf handlers (backfill.py) only pick *when* to reconcile; this module does it, and
returns the status patch for kopf to apply. Observation is limited to what
`lifecycle.needs` asks for, so finished resources cost no API requests.
"""
from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, Mapping, Optional, Protocol, TypeVar

import aiohttp
import kopf
from pydantic import ValidationError

from .. import lifecycle, metrics
from ..api.job_contract import entrypoint, last_report, work_from_spec
from ..api.models import GROUP, KIND, VERSION, BackfillSpec, BackfillStatus
from ..cluster import build_ray_cluster, dashboard_url, in_place_patch, needs_recreate, ray_cluster_name, token_secret_ref
from ..cluster.kuberay_features import unsupported
from ..cluster.pods import pod_problem
from ..cluster.readiness import head_image, ray_cluster_ready
from ..kube import Kube, SecretProblem, is_transient
from ..lifecycle import (
    ClusterView,
    CreateCluster,
    Decision,
    DeleteCluster,
    InputError,
    JobUnknown,
    JobView,
    Observed,
    PatchCluster,
    RecordEvent,
    StopJob,
    SubmitJob,
)
from ..rayjobs import BearerToken, LogFollower, RayJobClient, RayJobError, RayUnauthorized, SubmissionRejected
from ..settings import OperatorSettings
from .caches import KubeRayFeaturesCache, TokenCache

logger = logging.getLogger(__name__)

_STATUS_KEYS = {f.alias or name for name, f in BackfillStatus.model_fields.items()}


def parse_spec(spec: Mapping[str, Any]) -> tuple[Optional[BackfillSpec], Optional[InputError]]:
    try:
        return BackfillSpec.model_validate(dict(spec)), None
    except ValidationError as e:
        first = e.errors()[0]
        where = "spec." + ".".join(str(p) for p in first["loc"]) if first["loc"] else "spec"
        return None, InputError(where, "InvalidSpec", f"{first['msg']} ({e.error_count()} error(s))")


def spec_of(meta: Mapping[str, Any], spec: Mapping[str, Any], memo: Any = None) -> tuple[Optional[BackfillSpec], Optional[InputError]]:
    """parse_spec, remembered in the resource's kopf memo by (uid, generation): kopf asks the
    timers' filters every second for every resource, the spec only changes with
    metadata.generation, and validating it was a tenth of the operator's CPU at 200
    backfills. The parsed spec is read-only."""
    key = (meta.get("uid"), meta.get("generation"))
    if memo is None or None in key:
        return parse_spec(spec)
    cached = memo.get("parsed_spec")
    if cached is None or cached[0] != key:
        cached = memo.parsed_spec = (key, parse_spec(spec))
    return cached[1]


def parse_status(status: Mapping[str, Any]) -> BackfillStatus:
    # Ignore keys the model does not know (another tool's, or kopf's own bookkeeping).
    known = {k: v for k, v in dict(status).items() if k in _STATUS_KEYS}
    try:
        return BackfillStatus.model_validate(known)
    except ValidationError:
        logger.warning("unreadable status; starting from an empty one")
        return BackfillStatus()


def status_patch(old: Mapping[str, Any], new: BackfillStatus) -> dict[str, Any]:
    """A merge patch from the stored status to `new` (None deletes a key); {} if equal."""
    wire = new.to_wire()
    patch: dict[str, Any] = {k: v for k, v in wire.items() if old.get(k) != v}
    patch.update({k: None for k in old if k in _STATUS_KEYS and k not in wire})
    return patch


class ClusterReader(Protocol):
    async def get_ray_cluster(self, namespace: str, name: str) -> Optional[dict[str, Any]]: ...

    async def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]: ...


T = TypeVar("T")


class Runtime:
    """Shared by all handlers of one operator process (kopf memo)."""

    def __init__(self, settings: OperatorSettings, kube: Kube, session: aiohttp.ClientSession):
        self.settings = settings
        self.kube = kube
        self.session = session
        self.tokens = TokenCache(kube.read_secret_key, settings.token_cache_seconds)
        self.kuberay = KubeRayFeaturesCache(kube.read_crd, settings.kuberay_features_seconds)
        self.post_event = kopf.event  # replaceable in tests (kopf.event needs a running operator)

    # -- observe

    def _base(self, body: Mapping[str, Any], deleting: bool, memo: Any = None) -> Observed:
        """The facts in the resource itself (no API calls)."""
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        spec, input_error = spec_of(meta, body.get("spec") or {}, memo)
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
            input_error=input_error,
            default_image=self.settings.default_ray_image,
        )

    async def observe(
        self, body: Mapping[str, Any], memo: Any, deleting: bool = False, clusters: Optional[ClusterReader] = None,
        waiting: Optional[InputError] = None,
    ) -> tuple[Observed, Optional[BearerToken]]:
        """What `decide` needs (and only that: see lifecycle.needs), plus the Ray token.
        RayClusters are read from `clusters` (the operator's watch cache), else with a GET.
        `waiting`: what the handlers found this backfill must wait for (a busy column)."""
        observed = self._base(body, deleting, memo)
        if waiting is not None and not deleting:
            observed = replace(observed, input_error=waiting)
        spec = observed.spec
        needs = lifecycle.needs(spec, observed.status, observed.now, deleting)
        token: Optional[BearerToken] = None
        if spec is not None and (needs.inputs or needs.job_id or deleting):
            token, problem = await self._token(observed.namespace, spec)
            if problem is not None and not deleting:
                observed = replace(observed, input_error=problem)  # takes precedence: it needs an edit or a Secret
        if spec is not None and needs.inputs and observed.input_error is None and not deleting:
            too_old = unsupported(spec, await self.kuberay.get())
            if too_old is not None:
                observed = replace(observed, input_error=InputError(too_old.requirement.field, too_old.reason, too_old.message))
        if needs.cluster and spec is not None:
            cluster = await self._observe_cluster(observed, spec, clusters or self.kube)
        else:
            cluster = None
        job = None
        if needs.job_id and cluster is not None and cluster.ready and observed.input_error is None:
            job, auth_problem = await self._observe_job(observed, needs.job_id, token, memo)
            if auth_problem is not None:
                observed = replace(observed, input_error=auth_problem)
        return replace(observed, cluster=cluster, job=job), token

    async def observe_for_logs(self, body: Mapping[str, Any]) -> tuple[Observed, Optional[BearerToken]]:
        """Just enough to talk to the job's Ray cluster (dashboard URL and token)."""
        observed = self._base(body, deleting=False)
        if observed.spec is None:
            raise RayJobError("spec does not validate")
        token, problem = await self._token(observed.namespace, observed.spec)
        if problem is not None:
            raise RayJobError(problem.message)
        return observed, token

    async def _token(self, namespace: str, spec: BackfillSpec) -> tuple[Optional[BearerToken], Optional[InputError]]:
        ref = token_secret_ref(spec, self.settings)
        if ref is None:
            return None, None
        try:
            return BearerToken(await self.tokens.get(namespace, ref.name, ref.key)), None
        except SecretProblem as e:
            field = "spec.auth.tokenSecretRef" if spec.auth.token_secret_ref is not None else "GENEVA_RAY_TOKEN_SECRET"
            return None, InputError(field, "AuthSecretNotFound", str(e), may_clear=e.may_clear)

    def _owner(self, observed: Observed) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": observed.name, "uid": observed.uid}

    async def desired_cluster(self, observed: Observed) -> dict[str, Any]:
        return build_ray_cluster(
            name=observed.cluster_name,
            namespace=observed.namespace,
            owner=self._owner(observed),
            spec=observed.spec,
            settings=self.settings,
            features=await self.kuberay.get(),
        )

    async def _with_fresh_token(
        self, observed: Observed, token: Optional[BearerToken], call: Callable[[Optional[BearerToken]], Awaitable[T]]
    ) -> T:
        """`call(token)`; if Ray refuses the token, once more with the token re-read from its
        Secret (the cached copy may predate a rotation). A refusal of a fresh token stands."""
        try:
            return await call(token)
        except RayUnauthorized:
            fresh = await self.fresh_token(observed)
            if fresh is None or fresh == token:
                raise
            return await call(fresh)

    async def fresh_token(self, observed: Observed) -> Optional[BearerToken]:
        """The token read from its Secret now, bypassing (and refilling) the cache."""
        ref = token_secret_ref(observed.spec, self.settings) if observed.spec is not None else None
        if ref is None:
            return None
        self.tokens.forget(observed.namespace, ref.name, ref.key)
        token, _ = await self._token(observed.namespace, observed.spec)
        return token

    async def _observe_cluster(self, observed: Observed, spec: BackfillSpec, clusters: ClusterReader) -> ClusterView:
        obj = await clusters.get_ray_cluster(observed.namespace, observed.cluster_name)
        if obj is None:
            return ClusterView(exists=False)
        refs = obj.get("metadata", {}).get("ownerReferences") or []
        owned = spec.existing_cluster is None and any(r.get("uid") == observed.uid for r in refs)
        pods = [] if observed.deleting else await clusters.ray_pods(observed.namespace, observed.cluster_name)
        ready, message = ray_cluster_ready(obj, await self.kuberay.get(), pods)
        patch, recreate = None, ()
        problem = None if observed.deleting else pod_problem(pods)
        if owned and not observed.deleting:
            desired = await self.desired_cluster(observed)
            patch = in_place_patch(obj, desired)
            recreate = tuple(needs_recreate(obj, desired))
        return ClusterView(exists=True, ready=ready, owned=owned, message=message, patch=patch, recreate=recreate,
                           image=head_image(obj), pod_problem=problem)

    def ray(self, observed: Observed, token: Optional[BearerToken]) -> RayJobClient:
        return RayJobClient(
            observed.dashboard_url, token=token, session=self.session, timeout=self.settings.http_timeout_seconds
        )

    async def _observe_job(
        self, observed: Observed, job_id: str, token: Optional[BearerToken], memo: Any
    ) -> tuple[JobView, Optional[InputError]]:
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
            return await self._with_fresh_token(observed, token, look), None
        except RayUnauthorized as e:
            return JobView(job_id, JobUnknown.UNREACHABLE, str(e)), _auth_failure(e)
        except RayJobError as e:
            return JobView(job_id, JobUnknown.UNREACHABLE, str(e)), None

    # -- act

    async def execute(self, observed: Observed, decision: Decision, token: Optional[BearerToken], body: Any) -> Decision:
        """Run the actions in order. Transient failures raise (the status is then not written
        and the next reconcile starts over: every action is idempotent). Permanent ones (the
        API server or Ray rejecting what we send) fail the backfill with the reason."""
        for action in decision.actions:
            try:
                await self._execute_one(observed, action, token, body)
            except RayUnauthorized as e:
                return await self._fail_permanently(observed, _auth_failure(e), token, body)
            except SubmissionRejected as e:
                return await self._fail_permanently(observed, InputError("spec.runtimeEnv", "SubmissionRejected", str(e)), token, body)
            except Exception as e:
                if isinstance(action, (CreateCluster, PatchCluster)) and not is_transient(e):
                    reason = "ClusterRejected"
                    problem = InputError("spec.cluster", reason, f"{type(action).__name__}: {getattr(e, 'reason', '')} {getattr(e, 'body', e)}"[:600])
                    return await self._fail_permanently(observed, problem, token, body)
                raise
        return decision

    async def _fail_permanently(self, observed: Observed, problem: InputError, token: Optional[BearerToken], body: Any) -> Decision:
        decision = lifecycle.decide(replace(observed, input_error=problem))
        for action in decision.actions:  # a failure decision: stop the job, events
            await self._execute_one(observed, action, token, body)
        return decision

    async def _execute_one(self, observed: Observed, action: Any, token: Optional[BearerToken], body: Any) -> None:
        ns = observed.namespace
        if isinstance(action, CreateCluster):
            await self.kube.create_ray_cluster(ns, await self.desired_cluster(observed))
        elif isinstance(action, PatchCluster):
            await self.kube.patch_ray_cluster(ns, action.name, action.patch)
        elif isinstance(action, DeleteCluster):
            await self.kube.delete_ray_cluster(ns, action.name)
        elif isinstance(action, SubmitJob):
            await self._submit(observed, action, token)
        elif isinstance(action, StopJob):
            try:  # best effort: a job on a cluster being deleted dies with it anyway
                await self._with_fresh_token(observed, token, lambda t: self.ray(observed, t).stop_job(action.submission_id))
            except RayJobError as e:
                logger.warning("could not stop Ray job %s: %s", action.submission_id, e)
        elif isinstance(action, RecordEvent):
            self.post_event(body, type=action.type, reason=action.reason, message=action.message[:1024])
        else:  # pragma: no cover - the Action union is closed
            raise TypeError(f"unknown action {action!r}")

    async def _submit(self, observed: Observed, action: SubmitJob, token: Optional[BearerToken]) -> None:
        spec = observed.spec
        started = time.monotonic()
        job, submitted = await self._with_fresh_token(observed, token, lambda t: self.ray(observed, t).ensure_job(
            submission_id=action.submission_id,
            entrypoint=entrypoint(work_from_spec(spec)),
            runtime_env=runtime_env(spec),
            metadata={
                "geneva.lancedb.com/backfill": f"{observed.namespace}/{observed.name}",
                "geneva.lancedb.com/uid": observed.uid,
                "geneva.lancedb.com/attempt": str(action.attempt),
                "geneva.lancedb.com/udf-version": spec.udf.version,
            },
        ))
        metrics.SUBMISSION_SECONDS.observe(time.monotonic() - started)
        logger.info(
            "%s job %s (status %s)", "submitted" if submitted else "found existing", action.submission_id, job.status
        )


def runtime_env(spec: BackfillSpec) -> Optional[dict[str, Any]]:
    """Ray's runtime_env from spec.runtimeEnv (only the keys that are set)."""
    env = spec.runtime_env
    if env is None:
        return None
    out: dict[str, Any] = {}
    if env.pip:
        out["pip"] = list(env.pip)
    if env.env_vars:
        out["env_vars"] = dict(env.env_vars)
    if env.working_dir:
        out["working_dir"] = env.working_dir
    if env.py_modules:
        out["py_modules"] = list(env.py_modules)
    return out or None


def _auth_failure(e: RayUnauthorized) -> InputError:
    # One reason whether the token was refused while looking a job up or while submitting it.
    return InputError("spec.auth.tokenSecretRef", "RayAuthenticationFailed", str(e))
