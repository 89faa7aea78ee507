"""Carrying out a decision's actions. Nothing is decided here: a refusal is reported back
(lifecycle.ActionRefused, via status.lastActionError) for the next reconcile to act on."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Optional

from .. import metrics
from ..api.models import ActionError
from ..cluster.job_request import job_request
from ..kube import is_transient
from ..lifecycle import (
    CreateCluster, Decision, DeleteCluster, Observed, PatchCluster, RayAuthRefused, RecordEvent, StopJob, SubmitJob,
)
from ..rayjobs import BearerToken, RayJobError, RayUnauthorized, SubmissionRejected

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger(__name__)


async def execute(rt: "Runtime", observed: Observed, decision: Decision, token: Optional[BearerToken],
                  body: Any) -> Optional[ActionError]:
    """Run the actions in order and report how it went. Transient failures raise (the next
    reconcile starts over: every action is idempotent). What the API server or Ray refuses is
    returned, for the status; the actions after it are not run."""
    for action in decision.actions:
        name = type(action).__name__
        try:
            await _execute_one(rt, observed, action, token, body)
        except RayUnauthorized as e:
            return ActionError(action=name, reason=RayAuthRefused.reason, field=RayAuthRefused.field, message=str(e))
        except SubmissionRejected as e:
            return ActionError(action=name, reason="SubmissionRejected", field="spec.runtimeEnv", message=str(e))
        except Exception as e:
            if isinstance(action, (CreateCluster, PatchCluster)) and not is_transient(e):
                answer = f"{name}: {getattr(e, 'reason', '')} {getattr(e, 'body', e)}"[:600]
                return ActionError(action=name, reason="ClusterRejected", field="spec.cluster", message=answer)
            raise
    return None


async def _execute_one(rt: "Runtime", observed: Observed, action: Any, token: Optional[BearerToken], body: Any) -> None:
    ns = observed.namespace
    if isinstance(action, CreateCluster):
        await rt.kube.create_ray_cluster(ns, await rt.desired_cluster(observed))
    elif isinstance(action, PatchCluster):
        await rt.kube.patch_ray_cluster(ns, action.name, action.patch)
    elif isinstance(action, DeleteCluster):
        await rt.kube.delete_ray_cluster(ns, action.name)
    elif isinstance(action, SubmitJob):
        await _submit(rt, observed, action, token)
    elif isinstance(action, StopJob):
        try:  # best effort: a job on a cluster being deleted dies with it anyway
            await rt.tokens.with_fresh(ns, observed.spec, token, lambda t: rt.ray(observed, t).stop_job(action.submission_id))
        except RayJobError as e:
            logger.warning("could not stop Ray job %s: %s", action.submission_id, e)
    elif isinstance(action, RecordEvent):
        rt.post_event(body, type=action.type, reason=action.reason, message=action.message[:1024])
    else:  # pragma: no cover - the Action union is closed
        raise TypeError(f"unknown action {action!r}")


async def _submit(rt: "Runtime", observed: Observed, action: SubmitJob, token: Optional[BearerToken]) -> None:
    request = job_request(observed.namespace, observed.name, observed.uid, observed.spec, action.submission_id, action.attempt)
    started = time.monotonic()
    job, submitted = await rt.tokens.with_fresh(observed.namespace, observed.spec, token,
                                                lambda t: rt.ray(observed, t).ensure_job(**request))
    metrics.SUBMISSION_SECONDS.observe(time.monotonic() - started)
    logger.info("%s job %s (status %s)", "submitted" if submitted else "found existing", action.submission_id, job.status)
