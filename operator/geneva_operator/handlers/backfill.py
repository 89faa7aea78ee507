"""When a GenevaBackfill is reconciled. Thin: every path ends in runtime.Runtime.

* on.create / on.resume / on.update(spec): reconcile now (a spec change, e.g. suspend or a new
  udf version, acts at once, also on a finished resource).
* a 1 s timer while the stored state is one that polls (`lifecycle.polls`): reconciles
  when due (every `provisioning_poll_seconds` while starting, `poll_interval_seconds` while
  running) or at once when the log follower saw new progress or the end of the log.
* a CLEANUP_TICK_SECONDS timer while a finished resource waits for its cluster's TTL: such a
  reconcile makes no API request until the TTL has run out. Settled resources match no
  timer: they cost nothing at all.
* a daemon while a job is submitted: follows its driver log (websocket) for progress lines.
* on.delete (kopf's finalizer `geneva.lancedb.com/finalizer`): stop the job, delete the
  cluster we created, and hold the finalizer until that cluster is gone.

RayClusters and their pods are read from the `ray_clusters` and `ray_pods` indexes
(caches.py), which kopf hands every handler: a reconcile's only API request is then the
status patch, if anything changed. The `backfill_columns` index (columns.py) holds a
backfill back while another one writes its column.

All reconciles of one resource take its lock (kopf runs timers, daemons and change handlers
concurrently). The decided status is written before the actions are taken, with the
resourceVersion of the body it was decided on (kube.patch_backfill_status). A handler may
hold a body older than the status the previous reconcile wrote (kopf hands timers the last
body the watch delivered): the API server then refuses the write, and the whole decision,
actions included, is dropped. The newer version's watch event brings the body to decide on
again: the next tick for a polling state, kopf's retry (TemporaryError) for a change handler.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Mapping, Optional

import kopf

from .. import lifecycle, metrics
from ..api.models import GROUP, PLURAL, VERSION, Phase
from ..rayjobs import LogFollower, RayJobError, RayUnauthorized
from ..settings import OperatorSettings
from .caches import IndexedClusters
from .columns import column_busy
from .runtime import ClusterReader, Runtime
from ..kube import StatusConflict
from .status import parse_status, status_patch

logger = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# How late after ttlSecondsAfterFinished a cluster may be deleted, traded against waking
# every finished backfill each second (the operator benchmark saw 200 ticks/s at idle).
CLEANUP_TICK_SECONDS = 5.0
# How long the delete handler waits in place for our RayCluster to go (KubeRay deletes its
# pods first) before handing back to kopf, which retries it but logs each retry as an error.
DELETE_WAIT_SECONDS = 60.0


def _lock(memo: kopf.Memo) -> asyncio.Lock:
    # The per-resource memo is a shallow copy of the operator's: create the lock here,
    # never in the operator memo (it would be shared by all resources).
    if "lock" not in memo:
        memo.lock = asyncio.Lock()
    return memo.lock


async def reconcile(
    body: kopf.Body, memo: kopf.Memo, handler: str, clusters: Optional[ClusterReader] = None,
    columns: Optional[Mapping[Any, Any]] = None,
) -> bool:
    """One reconcile; False when dropped because `body` is older than the resource (see the
    module docstring). `clusters` and `columns` are the operator's indexes (RayClusters; who
    claims which column)."""
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    old: Mapping[str, Any] = body.get("status") or {}
    async with _lock(memo):
        try:
            column = column_busy(body, columns, memo) if columns is not None else None
            observed, token = await runtime.observe(body, memo, clusters=clusters, column=column)
            decision = lifecycle.decide(observed)
            status = decision.status
            changes = status_patch(old, status)
            version = meta.get("resourceVersion")
            if changes or decision.actions:  # acting on an outdated body repeats what was done
                version = await runtime.kube.patch_backfill_status(meta["namespace"], meta["name"], version, changes)
            refused = await runtime.execute(observed, decision, token, body)
            if refused is not None:  # an outcome for the next reconcile to observe, not a decision
                status = status.model_copy(update={"last_action_error": refused})
                await runtime.kube.patch_backfill_status(meta["namespace"], meta["name"], version,
                                                         status_patch(old, status))
        except StatusConflict:
            # Dropped whole. (On the second patch, only the record of a refusal is lost: the
            # next reconcile takes the action again and meets the refusal again.)
            logger.debug("%s: %s; deciding again on the newer version", handler, meta["name"])
            memo.next_reconcile = 0.0
            return False
        except Exception:
            metrics.RECONCILE_ERRORS.labels(handler=handler).inc()
            raise
    _account(body, old, status)
    memo.next_reconcile = time.monotonic() + _next_look(runtime.settings, decision, refused is not None)
    return True


def _account(body: kopf.Body, old: Mapping[str, Any], new: Any) -> None:
    metrics.observe_phase(body["metadata"]["uid"], new.phase)
    if old.get("startTime") == new.start_time and new.progress is not None:
        metrics.rows_committed((old.get("progress") or {}).get("rowsDone", 0), new.progress.rows_done)


def _next_look(settings: OperatorSettings, decision: lifecycle.Decision, at_once: bool) -> float:
    """Seconds to the next periodic reconcile: when the decision asks (a cleanup's TTL), else the
    poll interval of its phase; at once when an action's refusal waits to be observed."""
    if at_once:
        return 0.0
    if decision.requeue_after is not None:
        return decision.requeue_after
    running = decision.status.phase == Phase.Running.value
    return settings.poll_interval_seconds if running else settings.provisioning_poll_seconds


def _should_tick(status: Mapping[str, Any], **_: Any) -> bool:
    return lifecycle.polls(parse_status(status))


def _waiting_for_cleanup(status: Mapping[str, Any], **_: Any) -> bool:
    return lifecycle.waits_for_cleanup(parse_status(status))


def _job_submitted(status: Mapping[str, Any], **_: Any) -> bool:
    return lifecycle.follows_job(parse_status(status))


@kopf.on.create(GROUP, VERSION, PLURAL, id="reconcile-create", backoff=5)
@kopf.on.resume(GROUP, VERSION, PLURAL, id="reconcile-resume", backoff=5)
@kopf.on.update(GROUP, VERSION, PLURAL, id="reconcile-update", field="spec", backoff=5)
async def on_change(body: kopf.Body, memo: kopf.Memo, ray_clusters: kopf.Index, backfill_columns: kopf.Index,
                    ray_pods: kopf.Index, **_: Any) -> None:
    if not await reconcile(body, memo, "change", IndexedClusters(ray_clusters, ray_pods), backfill_columns):
        # No timer may serve a settled resource: kopf runs the handler again, on the newer body.
        raise kopf.TemporaryError("the resource changed while it was reconciled", delay=1)


def _log_news(follower: Optional[LogFollower]) -> Optional[tuple[str, int, bool]]:
    # The end of the log counts as news too: Ray closes the tail only once the job is over,
    # so that is the earliest moment a GET can see the terminal state.
    return None if follower is None else (follower.submission_id, follower.updates, follower.finished)


@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS, when=_should_tick)
async def on_tick(body: kopf.Body, memo: kopf.Memo, ray_clusters: kopf.Index, backfill_columns: kopf.Index,
                  ray_pods: kopf.Index, **_: Any) -> None:
    news = _log_news(memo.get("follower"))
    if news == memo.get("seen_news") and time.monotonic() < memo.get("next_reconcile", 0.0):
        return
    # Marked seen only by a reconcile that ran: a dropped (outdated body) one must leave the
    # news for the next tick, or the status would wait for the next poll interval.
    if await reconcile(body, memo, "timer", IndexedClusters(ray_clusters, ray_pods), backfill_columns):
        memo.seen_news = news


@kopf.timer(GROUP, VERSION, PLURAL, interval=CLEANUP_TICK_SECONDS, when=_waiting_for_cleanup)
async def on_cleanup_tick(body: kopf.Body, memo: kopf.Memo, ray_clusters: kopf.Index, backfill_columns: kopf.Index,
                          ray_pods: kopf.Index, **_: Any) -> None:
    if time.monotonic() < memo.get("next_reconcile", 0.0):
        return  # the TTL has not run out (Decision.requeue_after)
    await reconcile(body, memo, "cleanup", IndexedClusters(ray_clusters, ray_pods), backfill_columns)


@kopf.daemon(GROUP, VERSION, PLURAL, when=_job_submitted, cancellation_timeout=1.0)
async def follow_progress(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: logging.Logger, **_: Any) -> None:
    """Streams the current job's driver log into memo.follower (read by the reconcile)."""
    runtime: Runtime = memo.runtime
    while not stopped:
        job_id = (body.get("status") or {}).get("jobId")
        if not job_id:
            await stopped.wait(TICK_SECONDS)
            continue
        follower = LogFollower(job_id)  # a reconnect replays the log: start afresh
        memo.follower = follower
        try:
            observed, token = await runtime.observe_for_logs(body)
            await _until_stopped(follower.follow(runtime.ray(observed, token)), stopped)
        except RayUnauthorized as e:
            logger.debug("log tail of %s refused: %s; re-reading the token", job_id, e)
            await runtime.fresh_token(observed)
        except RayJobError as e:
            logger.debug("log tail of %s interrupted: %s", job_id, e)
        # Reconnect after a pause if the stream broke; once the log ended (the job is over),
        # wait for the next job id (a retry) or for kopf to stop us (phase changed).
        retry_at = time.monotonic() + runtime.settings.provisioning_poll_seconds
        while not stopped and (body.get("status") or {}).get("jobId") == job_id:
            if not follower.finished and time.monotonic() >= retry_at:
                break
            await stopped.wait(TICK_SECONDS)


async def _until_stopped(work: Awaitable[None], stopped: kopf.DaemonStopped) -> None:
    """Run `work` until it ends or kopf asks the daemon to stop. The log tail blocks for as
    long as the job runs, and a daemon that ignores its stop flag is cancelled by kopf with a
    warning at every phase change."""
    task = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, stop):
            if not pending.done():
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending
    if task.done() and not task.cancelled():
        task.result()  # re-raise what the stream raised


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def on_delete(body: kopf.Body, memo: kopf.Memo, ray_clusters: kopf.Index, **_: Any) -> None:
    clusters = IndexedClusters(ray_clusters)
    observed, decision = await _finalize(body, memo, clusters)
    deadline = time.monotonic() + DELETE_WAIT_SECONDS
    while not decision.finalized and time.monotonic() < deadline:
        # The index shows the deletion as soon as the watch does: no requests while waiting.
        await asyncio.sleep(TICK_SECONDS)
        if await clusters.get_ray_cluster(observed.namespace, observed.cluster_name) is None:
            observed, decision = await _finalize(body, memo, clusters)
    if not decision.finalized:
        raise kopf.TemporaryError(f"waiting for RayCluster {observed.cluster_name} to be deleted", delay=5)
    metrics.observe_phase(body["metadata"]["uid"], None)


async def _finalize(body: kopf.Body, memo: kopf.Memo, clusters: ClusterReader) -> tuple[lifecycle.Observed, lifecycle.Decision]:
    runtime: Runtime = memo.runtime
    async with _lock(memo):
        try:
            observed, token = await runtime.observe(body, memo, deleting=True, clusters=clusters)
            decision = lifecycle.decide(observed)
            await runtime.execute(observed, decision, token, body)
        except Exception:
            metrics.RECONCILE_ERRORS.labels(handler="delete").inc()
            raise
    return observed, decision
