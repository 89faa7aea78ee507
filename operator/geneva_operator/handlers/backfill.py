"""When a GenevaBackfill is reconciled. Thin: every path ends in runtime.Runtime.

* on.create / on.resume / on.update(spec): reconcile now (a spec change, e.g. suspend or a new
  udf version, acts at once, also on a finished resource).
* every other reconcile is timed by the operator's schedule (schedule.py): each reconcile
  sets the resource's next time from its decision (every `provisioning_poll_seconds` while
  starting, `poll_interval_seconds` while running, a deadline, a cleanup TTL), and news from
  the job's log moves it earlier. A daemon per resource that has a next time (its stored
  state polls or waits for a cleanup TTL) sleeps until then: nothing ticks in between, and
  settled resources have no daemon at all.
* a daemon while a job is submitted: follows its driver log (websocket) for progress lines;
  a progress line brings the next reconcile to within `progress_interval_seconds` (longer
  when more logs are followed than `progress_writes_per_second` allows), the result line
  and the end of the log to now.
* on.delete (kopf's finalizer `geneva.lancedb.com/finalizer`): stop the job, delete the
  cluster we created, and hold the finalizer until that cluster is gone.

RayClusters and their pods are read from the `ray_clusters` and `ray_pods` indexes
(caches.py), which kopf hands every handler: a reconcile's only API request is then the
status patch, if anything changed. The `backfill_columns` index (columns.py) holds a
backfill back while another one writes its column.

All reconciles of one resource take its lock (kopf runs daemons and change handlers
concurrently). The decided status is written before the actions are taken, with the
resourceVersion of the body it was decided on (kube.patch_backfill_status). A handler may
hold a body older than the resource (kopf's own annotation writes, a user's edit, our last
status write: their watch events not in yet): the API server then refuses the write, and
the whole decision, actions included, is dropped. It is decided again at once on a fresh
read of the resource, not on the watch's copy whenever it comes; a resource that keeps
changing under that is left to the next version's watch event (the schedule's daemon looks
again after CONFLICT_RETRY_SECONDS, a change handler through kopf's retry).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, Optional

import kopf

from .. import lifecycle, metrics
from ..api.models import GROUP, PLURAL, VERSION, BackfillStatus, Phase
from ..api.job_contract import ResultReport
from ..rayjobs import LogFollower, RayJobError, RayUnauthorized
from ..settings import OperatorSettings
from .caches import IndexedClusters
from .columns import column_busy
from .runtime import ClusterReader, Runtime
from .schedule import Schedule
from ..kube import StatusConflict, StatusWritten
from .status import parse_status, status_patch

logger = logging.getLogger(__name__)

# How often the log daemon looks for a job id, or for a broken log stream to reconnect.
TICK_SECONDS = 1.0
# A status patch refused for an outdated body: read the resource afresh and decide again on
# that, up to this many times in one reconcile, rather than wait for the watch to bring the
# newer version (under load it lags by seconds). Beyond that the resource is being written
# faster than decided on: look again after CONFLICT_RETRY_SECONDS.
CONFLICT_REREADS = 2
CONFLICT_RETRY_SECONDS = 0.2
# The job's log ended or holds its result line, yet Ray still says RUNNING (its driver is
# exiting, its supervisor not yet done): look again this soon, not after the poll interval.
ENDING_RECHECK_SECONDS = 0.25
# A reconcile of the schedule's daemon that raised: look again after this long (kopf's
# timers retried after their interval; a change handler after its backoff).
ERROR_RETRY_SECONDS = 5.0
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
    """One reconcile; False when dropped because the resource kept changing under it (see the
    module docstring). `clusters` and `columns` are the operator's indexes (RayClusters; who
    claims which column)."""
    runtime: Runtime = memo.runtime
    meta = body["metadata"]
    async with _lock(memo), runtime.schedule.running(meta["uid"]):
        body = _newest(body, memo)
        for rereads in range(CONFLICT_REREADS + 1):
            try:
                decision, status, refused = await _decide_and_act(runtime, body, memo, clusters, columns)
                break
            except StatusConflict:
                pass
            except Exception:
                metrics.RECONCILE_ERRORS.labels(handler=handler).inc()
                raise
            if rereads == CONFLICT_REREADS:
                logger.debug("%s: %s kept changing; deciding again on the next version", handler, meta["name"])
                runtime.schedule.sooner(meta["uid"], CONFLICT_RETRY_SECONDS)
                return False
            fresh = await runtime.kube.get_backfill(meta["namespace"], meta["name"])
            if fresh is None:
                return True  # deleted meanwhile: kopf hands it to on_delete
            _remember(memo, body["metadata"]["resourceVersion"], fresh)
            body = fresh
        _account(body, body.get("status") or {}, status)
        if _has_next_time(status):
            ending = _log_says_over(memo.get("follower"), status.job_id)
            runtime.schedule.at(meta["uid"], _next_look(runtime.settings, decision, refused is not None, ending))
        else:
            runtime.schedule.settle(meta["uid"])
    return True


async def _decide_and_act(
    runtime: Runtime, body: Mapping[str, Any], memo: kopf.Memo, clusters: Optional[ClusterReader],
    columns: Optional[Mapping[Any, Any]],
) -> tuple[lifecycle.Decision, BackfillStatus, Optional[Any]]:
    """Observe, decide, write the status, act. StatusConflict when `body` is outdated: then
    nothing was written or done."""
    meta = body["metadata"]
    old: Mapping[str, Any] = body.get("status") or {}
    column = column_busy(body, columns, memo) if columns is not None else None
    observed, token = await runtime.observe(body, memo, clusters=clusters, column=column)
    decision = lifecycle.decide(observed)
    status = decision.status
    changes = status_patch(old, status)
    version = meta.get("resourceVersion")
    if changes or decision.actions:  # acting on an outdated body repeats what was done
        written = await runtime.kube.patch_backfill_status(meta["namespace"], meta["name"], version, changes)
        version = _remember(memo, version, _with_status(body, written))
    refused = await runtime.execute(observed, decision, token, body)
    if refused is not None:  # an outcome for the next reconcile to observe, not a decision
        status = status.model_copy(update={"last_action_error": refused})
        try:
            written = await runtime.kube.patch_backfill_status(meta["namespace"], meta["name"], version,
                                                               status_patch(old, status))
        except StatusConflict:
            # Only the record of the refusal is lost: the next reconcile takes the action again
            # and meets the refusal again. (Decided again now, it would act twice.)
            logger.debug("%s: the record of a refused %s was outdated", meta["name"], refused.action)
        else:
            _remember(memo, version, _with_status(body, written))
    return decision, status, refused


def _with_status(body: Mapping[str, Any], written: StatusWritten) -> dict[str, Any]:
    """`body` as the API server's answer to our status patch left it."""
    return {**body, "metadata": {**body["metadata"], "resourceVersion": written.version}, "status": written.status}


def _newest(body: Mapping[str, Any], memo: kopf.Memo) -> Mapping[str, Any]:
    """The newest copy of the resource known: `body`, or, while the watch has not yet brought
    what our own last status write (or a fresh read after a refused one) returned, that copy.
    Deciding on `body` then would only earn a 409 and a retry for as long as the watch lags
    (the operator benchmark saw 8k such 409s at 1000 backfills, most of the status lag then).
    If anyone else wrote meanwhile, the next patch is refused as before."""
    newest = memo.get("newest")
    if newest is None:
        return body
    superseded, copy = newest
    if body["metadata"].get("resourceVersion") not in superseded:
        memo.newest = None  # the watch caught up (or moved past it): the body is the newest
        return body
    return copy


def _remember(memo: kopf.Memo, decided_on: str, copy: Mapping[str, Any]) -> str:
    """Keep `copy`, what a write decided on version `decided_on` returned (or what a fresh read
    after its refusal did), and every version it supersedes: `decided_on`, and, when that was
    itself the copy kept, those before it (the watch may bring any of them next). Returns the
    copy's version."""
    previous = memo.get("newest")
    version = copy["metadata"]["resourceVersion"]
    chain = previous[0] if previous is not None and previous[1]["metadata"]["resourceVersion"] == decided_on \
        else frozenset()
    memo.newest = (chain | {decided_on} if version != decided_on else chain, copy)
    return version


def _account(body: kopf.Body, old: Mapping[str, Any], new: Any) -> None:
    metrics.observe_phase(body["metadata"]["uid"], new.phase)
    if old.get("startTime") == new.start_time and new.progress is not None:
        metrics.rows_committed((old.get("progress") or {}).get("rowsDone", 0), new.progress.rows_done)


def _log_says_over(follower: Optional[LogFollower], job_id: Optional[str]) -> bool:
    """The current job's log holds its result line or has ended."""
    return (follower is not None and job_id is not None and follower.submission_id == job_id
            and (follower.finished or isinstance(follower.progress, ResultReport)))


def _next_look(settings: OperatorSettings, decision: lifecycle.Decision, at_once: bool, ending: bool = False) -> float:
    """Seconds to the next periodic reconcile: when the decision asks (a cleanup's TTL), else the
    poll interval of its phase; at once when an action's refusal waits to be observed; soon
    when the log says the job is over but Ray did not yet (the driver still exiting)."""
    if at_once:
        return 0.0
    if decision.requeue_after is not None:
        return decision.requeue_after
    running = decision.status.phase == Phase.Running.value
    if running and ending:
        return ENDING_RECHECK_SECONDS
    return settings.poll_interval_seconds if running else settings.provisioning_poll_seconds


def _has_next_time(status: BackfillStatus) -> bool:
    """Whether the state has a next time: it polls, or waits for a cleanup TTL."""
    return lifecycle.polls(status) or lifecycle.waits_for_cleanup(status)


def _scheduled(status: Mapping[str, Any], **_: Any) -> bool:
    """_has_next_time of the stored status (kopf's filter of the schedule's daemon). A resource
    no reconcile has written a state for yet has no daemon: its create (or, after a restart,
    resume) handler reconciles it first. kopf spawns daemons in the very cycle that adds its
    finalizer, so one there would reconcile beside that handler, and its status write would
    make kopf's finalizer patch fail (the operator benchmark saw one such 422 and one 409 per
    new backfill)."""
    stored = parse_status(status)
    return stored.state is not None and _has_next_time(stored)


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


# kopf stops the schedule's daemon when the watch brings a status without a next time: often
# the one its own reconcile has just written, while that reconcile still awaits the API
# server's answer. It is asked first (the daemon leaves between reconciles) and cancelled
# only after this long; a reconcile under way is shielded even then (_to_the_end).
DAEMON_STOP_GRACE_SECONDS = 10.0


@kopf.daemon(GROUP, VERSION, PLURAL, when=_scheduled, cancellation_backoff=DAEMON_STOP_GRACE_SECONDS,
             cancellation_timeout=1.0)
async def reconcile_when_due(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: logging.Logger,
                             ray_clusters: kopf.Index, backfill_columns: kopf.Index, ray_pods: kopf.Index,
                             **_: Any) -> None:
    """Sleeps until the schedule says this resource is due, then reconciles (schedule.py).
    kopf stops it when the stored state no longer has a next time."""
    schedule = memo.runtime.schedule
    uid = body["metadata"]["uid"]
    stop = asyncio.ensure_future(stopped.wait())
    try:
        while await schedule.until_due(uid, stop):
            try:
                await _to_the_end(reconcile(body, memo, "scheduled", IndexedClusters(ray_clusters, ray_pods),
                                            backfill_columns))
            except Exception:
                logger.exception("scheduled reconcile failed; again in %.0f s", ERROR_RETRY_SECONDS)
                schedule.at(uid, ERROR_RETRY_SECONDS)
    finally:
        stop.cancel()
        # Settled, deleted or paused: a daemon started again later (or a reconcile) sets it anew.
        schedule.drop(uid)


async def _to_the_end(work: Awaitable[bool]) -> bool:
    """Await one reconcile, which runs to its end even if the daemon awaiting it is cancelled.
    Its status is written before its actions are taken: cut off between the two, it would
    skip what was decided with that status (the ClusterDeleted Event, the JobSucceeded one),
    and no later reconcile decides them again, since the status already says they happened."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        task.add_done_callback(_log_orphan)
        raise


def _log_orphan(task: "asyncio.Future[bool]") -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("a reconcile that outlived its daemon failed", exc_info=task.exception())


def _news(schedule: Schedule, uid: str, progress_interval: Callable[[], float]) -> Callable[[bool], None]:
    """What the log follower calls on news: the end of the run (the result line, the end of
    the log) is looked at now, progress within `progress_interval()` (one status write for
    several lines)."""
    def on_news(final: bool) -> None:
        schedule.sooner(uid, 0.0 if final else progress_interval())
    return on_news


def progress_interval(settings: OperatorSettings, following: int) -> float:
    """How soon a progress line reaches the status while `following` logs are followed: every
    `progress_interval_seconds`, or as often as the operator-wide budget of progress writes
    allows. At 1000 backfills, 400 running at a 2 s interval made 200 status writes a second,
    which slowed every write, the terminal ones included."""
    return max(settings.progress_interval_seconds, following / settings.progress_writes_per_second)


@kopf.daemon(GROUP, VERSION, PLURAL, when=_job_submitted, cancellation_timeout=1.0)
async def follow_progress(body: kopf.Body, memo: kopf.Memo, stopped: kopf.DaemonStopped, logger: logging.Logger, **_: Any) -> None:
    """Streams the current job's driver log into memo.follower (read by the reconcile)."""
    runtime: Runtime = memo.runtime
    uid = body["metadata"]["uid"]
    runtime.following.add(uid)
    try:
        await _follow(body, memo, runtime, stopped, logger)
    finally:
        runtime.following.discard(uid)


async def _follow(body: kopf.Body, memo: kopf.Memo, runtime: Runtime, stopped: kopf.DaemonStopped,
                  logger: logging.Logger) -> None:
    interval = lambda: progress_interval(runtime.settings, len(runtime.following))  # noqa: E731
    while not stopped:
        job_id = (body.get("status") or {}).get("jobId")
        if not job_id:
            await stopped.wait(TICK_SECONDS)
            continue
        follower = LogFollower(job_id, on_news=_news(runtime.schedule, body["metadata"]["uid"], interval))
        # a reconnect replays the log: start afresh
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
