"""The handlers' reconcile (observe -> decide -> act -> status patch) against in-process fakes
of Kubernetes and of Ray's Job API: the wiring the pure state machine tests cannot see."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime, timezone
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, Optional

import aiohttp
import kopf
import pytest
from aiohttp.test_utils import TestServer

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import TOKEN, FakeKube, FakeRay  # noqa: E402
import pod_statuses as ps  # noqa: E402

from geneva_operator import lifecycle  # noqa: E402

from geneva_operator.api.job_contract import ProgressReport, ResultReport, entrypoint, work_from_spec  # noqa: E402
from geneva_operator.api.models import BackfillSpec, BackfillStatus  # noqa: E402
from geneva_operator.cluster.pods import slim_pod  # noqa: E402
from geneva_operator.handlers import backfill, caches, startup  # noqa: E402
from geneva_operator.handlers.caches import IndexedClusters, TokenCache  # noqa: E402
from geneva_operator.handlers.columns import backfill_columns  # noqa: E402
from geneva_operator.kube import SecretProblem  # noqa: E402
from geneva_operator.handlers.runtime import Runtime  # noqa: E402
from geneva_operator.handlers.status import parse_status, spec_of, status_patch  # noqa: E402
from geneva_operator.rayjobs import LogFollower, RayJobError  # noqa: E402
from geneva_operator.settings import DEFAULT_RAY_IMAGE, OperatorSettings  # noqa: E402

NS, NAME, UID = "geneva", "bf", "9a8b7c6d-0000-1111-2222-333344445555"


def spec_wire(**over: Any) -> dict[str, Any]:
    wire: dict[str, Any] = {
        "table": {"uri": "/data/db", "name": "t"},
        "column": "out",
        "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32", "version": "1"},
        "cluster": {},
        "auth": {"tokenSecretRef": {"name": "ray-token"}},
        "runtimeEnv": {"pip": ["pkg==1"], "envVars": {"A": "1"}},
        "backoffLimit": 1,
    }
    wire.update(over)
    return wire


class Harness:
    """A resource body, the runtime, and kopf's per-resource memo; `reconcile` reads
    RayClusters from the index as the handlers do. The status patches go to FakeKube, which
    refuses those made for an outdated resourceVersion; `catch_up` brings the body up to date
    with what was written, as the watch event after a patch would."""

    def __init__(self, url: str, session: aiohttp.ClientSession, kube: FakeKube, fake: FakeRay, **spec_over: Any):
        self.kube, self.fake = kube, fake
        self.body: dict[str, Any] = {
            "apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill",
            "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1, "resourceVersion": "1",
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": spec_wire(**spec_over), "status": {},
        }
        kube.backfills[(NS, NAME)] = self.body  # what a fresh read finds (FakeKube.get_backfill)
        self.events: list[tuple[str, str, str]] = []
        self.seen_patches = 0  # of kube.status_patches, those the body shows
        self.runtime = self.new_runtime(url, session)
        self.memo = kopf.Memo(runtime=self.runtime)

    def new_runtime(self, url: str, session: aiohttp.ClientSession) -> Runtime:
        runtime = Runtime(OperatorSettings(dashboard_url_template=url), self.kube, session)
        runtime.post_event = lambda body, type, reason, message: self.events.append((type, reason, message))
        return runtime

    async def reconcile(self, persist: bool = True, columns: Optional[dict] = None) -> dict[str, Any]:
        """One reconcile; the status changes it wrote. `persist`: the body then shows them."""
        before = len(self.kube.status_patches)
        await backfill.reconcile(self.body, self.memo, "test", IndexedClusters(self.kube.index(), self.kube.pod_index()), columns)
        changes: dict[str, Any] = {}
        for written in self.kube.status_patches[before:]:
            changes.update(written)
        if persist:
            self.catch_up()
        return changes

    def catch_up(self) -> None:
        status = dict(self.body["status"])
        for written in self.kube.status_patches[self.seen_patches:]:
            status.update(written)
        self.seen_patches = len(self.kube.status_patches)
        self.body["status"] = {k: v for k, v in status.items() if v is not None}
        self.body["metadata"]["resourceVersion"] = str(self.kube.versions.get((NS, self.body["metadata"]["name"]), 1))

    async def provision(self) -> None:
        """The first reconcile (creates the cluster), then KubeRay reports it ready."""
        await self.reconcile()
        self.kube.make_ready(NS, "bf-ray")

    @property
    def status(self) -> BackfillStatus:
        return parse_status(self.body["status"])


def harness(url: str, session: aiohttp.ClientSession, fake: FakeRay, token: Optional[str] = TOKEN,
            **spec_over: Any) -> tuple[Harness, FakeKube]:
    """A Harness on a fresh FakeKube holding the spec's token Secret (none if token is None)."""
    kube = FakeKube()
    if token is not None:
        kube.secrets[(NS, "ray-token")] = {"token": token}
    return Harness(url, session, kube, fake, **spec_over), kube


def run(test: Callable[[FakeRay, str, aiohttp.ClientSession], Awaitable[None]]) -> None:
    fake = FakeRay()

    async def main() -> None:
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                await test(fake, str(server.make_url("")).rstrip("/"), session)
        finally:
            await server.close()

    asyncio.run(main())


def test_full_run_create_submit_progress_succeed_delete():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)

        await h.reconcile()
        assert h.status.phase == "Provisioning"
        cluster = kube.clusters[(NS, "bf-ray")]
        assert cluster["metadata"]["ownerReferences"][0]["uid"] == UID
        assert ("Normal", "RunStarted") in {(t, r) for t, r, _ in h.events}

        await h.reconcile()  # not ready yet: nothing submitted
        assert not fake.jobs and h.status.phase == "Provisioning"

        kube.make_ready(NS, "bf-ray")
        before_submit = dict(h.body["status"])
        await h.reconcile()
        [sid] = fake.jobs
        assert sid == h.status.job_id and sid.startswith("geneva-9a8b7c6d-") and sid.endswith("-1")
        job = fake.jobs[sid]
        assert job["entrypoint"] == entrypoint(work_from_spec(BackfillSpec.model_validate(h.body["spec"])))
        assert job["runtime_env"] == {"pip": ["pkg==1"], "env_vars": {"A": "1"}}
        assert job["metadata"]["geneva.lancedb.com/backfill"] == f"{NS}/{NAME}"

        # The submission decided again (say by a restarted operator on a body from before it)
        # submits nothing new: Ray's job of that id is adopted.
        h.body["status"] = before_submit
        h.runtime = h.new_runtime(url, session)
        h.memo = kopf.Memo(runtime=h.runtime)
        await h.reconcile()
        assert fake.posts == 1 and h.status.job_id == sid

        fake.jobs[sid]["status"] = "RUNNING"
        follower = LogFollower(sid)
        follower.feed(ProgressReport(rows_done=4_100_000, rows_total=10_000_000, fragments_done=41, fragments_total=100).line() + "\n")
        h.memo.follower = follower
        await h.reconcile()
        assert h.status.phase == "Running" and h.body["status"]["rows"] == "4.1M/10.0M"
        assert h.body["status"]["progress"]["percent"] == 41

        fake.jobs[sid]["status"] = "SUCCEEDED"
        fake.logs[sid] = [ResultReport(rows_done=10_000_000, rows_total=10_000_000, committed_version=12).line() + "\n"]
        await h.reconcile()
        assert h.status.phase == "Succeeded" and h.status.table_version == 12
        assert h.body["status"]["rows"] == "10.0M/10.0M"

        # Deletion: our cluster goes, then (the handler sees it gone) the finalizer may go.
        await backfill.on_delete(body=h.body, memo=h.memo, ray_clusters=kube.index())
        assert (NS, "bf-ray") not in kube.clusters and kube.calls.count("delete bf-ray") == 1

    run(body)


def test_deletion_holds_the_finalizer_until_our_cluster_is_gone_without_repeating_the_delete(monkeypatch):
    monkeypatch.setattr(backfill, "TICK_SECONDS", 0.01)
    monkeypatch.setattr(backfill, "DELETE_WAIT_SECONDS", 0.1)

    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.slow_delete = True  # KubeRay still removing the pods
        await h.reconcile()
        with pytest.raises(kopf.TemporaryError, match="bf-ray"):  # kopf retries the handler later
            await backfill.on_delete(body=h.body, memo=h.memo, ray_clusters=kube.index())
        assert kube.calls.count("delete bf-ray") == 1  # waiting is watching, not re-deleting
        kube.clusters.pop((NS, "bf-ray"))  # KubeRay is done
        await backfill.on_delete(body=h.body, memo=h.memo, ray_clusters=kube.index())

    run(body)


def test_an_active_reconcile_reads_clusters_from_the_index_and_the_token_once():
    """Per reconcile of a running backfill: no RayCluster GET, no Secret or CRD GET (after the first)."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()
        for _ in range(5):
            await h.reconcile()
        assert h.status.job_id in fake.jobs
        assert kube.calls == ["secret ray-token", "crd rayclusters.ray.io", "create bf-ray"]

    run(body)


def test_the_desired_cluster_is_built_again_only_when_the_spec_or_the_cluster_changed():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()
        built, build = [], h.runtime.desired_cluster

        async def counted(observed: Any, features: Any = None) -> dict[str, Any]:
            built.append(observed.generation)
            return await build(observed, features)
        h.runtime.desired_cluster = counted
        kube.clusters[(NS, "bf-ray")]["metadata"]["resourceVersion"] = "10"
        for _ in range(4):
            await h.reconcile()
        assert h.status.job_id in fake.jobs and len(built) == 1
        [group] = kube.clusters[(NS, "bf-ray")]["spec"]["workerGroupSpecs"]
        group["maxReplicas"] += 1  # someone scaled it: a new version of the cluster
        kube.clusters[(NS, "bf-ray")]["metadata"]["resourceVersion"] = "11"
        await h.reconcile()
        assert len(built) == 2 and kube.calls.count("patch bf-ray") == 1  # seen, and put back
        h.body["spec"]["cluster"] = {"head": {"cpu": "3"}}  # a spec change: a new generation
        h.body["metadata"]["generation"] = 2
        await h.reconcile()
        assert built[-1] == 2

    run(body)


def test_a_rotated_token_is_re_read_when_ray_refuses_the_cached_one():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token="the-old-token")
        await h.reconcile()  # cluster created; the old token is cached
        kube.secrets[(NS, "ray-token")] = {"token": TOKEN}  # rotated (and the cluster with it)
        kube.make_ready(NS, "bf-ray")
        await h.reconcile()
        assert h.status.phase == "Provisioning" and h.status.job_id in fake.jobs
        assert kube.calls.count("secret ray-token") == 2
        await h.reconcile()
        assert kube.calls.count("secret ray-token") == 2  # the new token is cached again

    run(body)


def test_the_token_cache_keeps_successes_for_its_ttl_and_never_failures():
    async def main() -> None:
        now = [0.0]
        reads: list[str] = []
        values = {"a": "token-a"}

        async def read(ns: str, name: str, key: str) -> str:
            reads.append(name)
            if name not in values:
                raise SecretProblem(f"Secret {name} not found")
            return values[name]

        cache = TokenCache(read, ttl=60, clock=lambda: now[0])
        assert await cache.get(NS, "a", "token") == "token-a"
        assert await cache.get(NS, "a", "token") == "token-a" and reads == ["a"]
        for _ in range(2):
            with pytest.raises(SecretProblem):
                await cache.get(NS, "b", "token")
        assert reads == ["a", "b", "b"]  # a missing Secret is looked up every time
        values["a"] = "token-a2"
        now[0] = 61
        assert await cache.get(NS, "a", "token") == "token-a2"
        cache.forget(NS, "a", "token")
        assert await cache.get(NS, "a", "token") == "token-a2" and reads.count("a") == 3
        assert len(TokenCache(read, ttl=0)) == 0

    asyncio.run(main())


def columns_index(*bodies: dict[str, Any]) -> dict:
    """What kopf's `backfill_columns` index holds for these resources."""
    index: dict = {}
    for b in bodies:
        for key, claim in backfill_columns(meta=b["metadata"], spec=b["spec"], status=b["status"]).items():
            index.setdefault(key, []).append(claim)
    return index


def test_a_second_backfill_of_the_same_column_waits_until_the_first_ends():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        first, kube = harness(url, session, fake)
        second = Harness(url, session, kube, fake)
        second.body["metadata"].update(name="bf2", uid="11111111-2222", creationTimestamp="2026-01-01T00:05:00Z")
        second.body["spec"]["udf"]["version"] = "2"

        await first.reconcile(columns=columns_index(first.body, second.body))
        assert first.status.phase == "Provisioning"
        await second.reconcile(columns=columns_index(first.body, second.body))
        assert second.status.phase == "Pending" and second.status.reason == "ColumnBusy"
        assert f"GenevaBackfill {NS}/{NAME} is backfilling column 'out'" in second.status.message
        assert kube.calls.count("create bf2-ray") == 0
        assert ("Warning", "ColumnBusy") in {(t, r) for t, r, _ in second.events}

        first.body["status"]["phase"] = "Succeeded"  # the first run ended
        await second.reconcile(columns=columns_index(first.body, second.body))
        assert second.status.phase == "Provisioning" and kube.calls.count("create bf2-ray") == 1

    run(body)


def test_a_new_backfill_gets_the_schedules_daemon_only_once_its_first_reconcile_wrote_a_state():
    # The create handler's reconcile comes first; a daemon beside it would race it.
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        assert not backfill._scheduled(status={})
        assert not backfill._scheduled(status={"phase": "Running", "jobId": "j"})  # an older operator's: resumed
        await backfill.on_change(body=h.body, memo=h.memo, ray_clusters=kube.index(), backfill_columns={},
                                 ray_pods=kube.pod_index())
        h.catch_up()
        assert h.status.phase == "Provisioning" and backfill._scheduled(status=h.body["status"])

    run(body)


def test_a_decision_on_a_body_older_than_the_resource_is_decided_again_on_a_fresh_read():
    """A body from before someone else's write (its watch event not in yet) must not act: the
    API server refuses its status patch (the resourceVersion moved), and nothing of that
    decision is carried out. The reconcile reads the resource and decides again at once,
    rather than wait for the watch, which under load lags by seconds."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.versions[(NS, NAME)] = 7  # written by another writer, not yet seen
        assert await backfill.reconcile(h.body, h.memo, "test", IndexedClusters(kube.index(), kube.pod_index()))
        assert kube.calls.count("get backfill bf") == 1 and kube.calls.count("create bf-ray") == 1
        assert [p.get("phase") for p in kube.status_patches] == ["Provisioning"]  # the one decided on version 7
        assert [r for _, r, _ in h.events].count("RunStarted") == 1

        h.body["metadata"]["resourceVersion"] = "7"  # the watch brings version 7 later: older than our write
        await h.reconcile()
        assert kube.calls.count("create bf-ray") == 1 and [r for _, r, _ in h.events].count("RunStarted") == 1

    run(body)


def test_a_resource_that_keeps_changing_under_the_decision_is_left_to_its_next_version():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.versions[(NS, NAME)], kube.racing = 7, True  # every fresh read is outdated at once
        assert not await backfill.reconcile(h.body, h.memo, "test", IndexedClusters(kube.index(), kube.pod_index()))
        assert kube.calls.count("get backfill bf") == backfill.CONFLICT_REREADS
        assert h.events == [] and kube.status_patches == [] and kube.calls.count("create bf-ray") == 0
        assert h.runtime.schedule.due_in(UID) <= backfill.CONFLICT_RETRY_SECONDS  # decided again shortly

        kube.racing = False
        h.body["metadata"]["resourceVersion"] = str(kube.versions[(NS, NAME)])  # the writer stopped
        await h.reconcile()
        assert h.status.phase == "Provisioning" and kube.calls.count("create bf-ray") == 1

    run(body)


def test_a_decision_for_a_backfill_deleted_meanwhile_is_dropped():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.versions[(NS, NAME)] = 7
        del kube.backfills[(NS, NAME)]  # gone: kopf's delete handling takes it from here
        assert await backfill.reconcile(h.body, h.memo, "test", IndexedClusters(kube.index(), kube.pod_index()))
        assert kube.status_patches == [] and not kube.clusters and h.events == []

    run(body)


def test_a_reconcile_before_the_watch_brings_our_own_write_decides_on_that_write():
    """The body a handler holds lags our own status patch until its watch event arrives:
    the next reconcile decides on what that patch left (the API server's answer), so it
    neither repeats the transitions nor waits for the watch through 409s."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)

        first = await h.reconcile(persist=False)
        assert first["phase"] == "Provisioning" and kube.calls.count("create bf-ray") == 1
        events = list(h.events)
        kube.make_ready(NS, "bf-ray")
        await h.reconcile(persist=False)  # the body still says nothing at all
        assert [r for _, r, _ in h.events].count("RunStarted") == 1 and h.events[:len(events)] == events
        assert kube.calls.count("create bf-ray") == 1 and len(fake.jobs) == 1  # it went on: submitted
        fake.jobs[next(iter(fake.jobs))]["status"] = "RUNNING"
        await h.reconcile(persist=False)  # a third write, the body still at the first version
        assert kube.statuses[(NS, NAME)]["phase"] == "Running"
        h.catch_up()  # the watch events arrive: the body is the newest again
        await h.reconcile()
        assert len(fake.jobs) == 1 and fake.posts == 1 and h.status.job_id in fake.jobs

    run(body)


def test_actions_wait_for_their_status_to_be_written_even_when_it_does_not_change():
    """Converging a running cluster changes nothing in the status, but an outdated body still
    must not act: the (empty) patch then only checks the resourceVersion."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()
        await h.reconcile()
        fake.jobs[h.status.job_id]["status"] = "RUNNING"
        await h.reconcile()
        assert h.status.phase == "Running" and await h.reconcile() == {}
        [group] = kube.clusters[(NS, "bf-ray")]["spec"]["workerGroupSpecs"]
        group["maxReplicas"] += 1  # someone scaled it: the spec says otherwise
        written = len(kube.status_patches)
        await h.reconcile()
        assert kube.calls.count("patch bf-ray") == 1 and kube.status_patches[written:] == [{}]
        kube.versions[(NS, NAME)] += 1  # someone else writes, and keeps writing: our body is outdated
        kube.racing = True
        assert not await backfill.reconcile(h.body, h.memo, "test", IndexedClusters(kube.index(), kube.pod_index()))
        assert kube.calls.count("patch bf-ray") == 1

    run(body)


def test_a_change_handler_on_an_outdated_body_is_retried_by_kopf():
    # A settled resource has no timer: only kopf's retry of the handler decides again.
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.versions[(NS, NAME)], kube.racing = 7, True
        with pytest.raises(kopf.TemporaryError):
            await backfill.on_change(body=h.body, memo=h.memo, ray_clusters=kube.index(), backfill_columns={},
                                     ray_pods=kube.pod_index())
        assert not kube.clusters and not h.events
        kube.racing = False
        h.catch_up()
        await backfill.on_change(body=h.body, memo=h.memo, ray_clusters=kube.index(), backfill_columns={},
                                 ray_pods=kube.pod_index())
        assert (NS, "bf-ray") in kube.clusters

    run(body)


def test_a_submission_written_but_never_sent_is_sent_with_the_same_id():
    """The status names the job before it is submitted: when the submission fails (or the
    operator stops in between), the next reconcile finds no such job and submits that id."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()
        fake.down_for_posts = 1
        with pytest.raises(RayJobError):
            await h.reconcile()
        h.catch_up()
        sid = h.status.job_id
        assert sid and not fake.jobs and h.status.attempts == 1
        await h.reconcile()
        assert list(fake.jobs) == [sid] and h.status.job_id == sid and h.status.attempts == 1
        assert h.status.phase == "Provisioning"

    run(body)


def test_a_refused_action_is_recorded_after_the_decided_status():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token="not-the-token")
        await h.provision()
        before = len(kube.status_patches)
        changes = await h.reconcile()  # the submission is refused
        decided, refusal = kube.status_patches[before:]
        assert decided["jobId"] and "lastActionError" not in decided
        assert refusal["lastActionError"]["reason"] == "RayAuthenticationFailed" and changes["jobId"] == decided["jobId"]

    run(body)


def test_failed_job_keeps_log_tail_and_retries_then_fails():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()
        await h.reconcile()
        first = h.status.job_id
        fake.jobs[first].update(status="FAILED", message="Job entrypoint command failed with exit code 1")
        fake.logs[first] = [f"line {i}\n" for i in range(50)] + ["RuntimeError: udf exploded\n"]
        await h.reconcile()
        second = h.status.job_id
        assert second != first and second in fake.jobs and h.status.attempts == 2
        assert h.status.log_tail.endswith("RuntimeError: udf exploded")
        assert any(r == "JobFailed" and t == "Warning" for t, r, _ in h.events)
        fake.jobs[second].update(status="FAILED", message="exit code 1")
        await h.reconcile()
        assert h.status.phase == "Failed" and h.status.reason == "BackoffLimitExceeded"
        assert len(fake.jobs) == 2

    run(body)


def test_a_default_image_without_the_engine_fails_the_backfill_at_once_naming_it():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        h.runtime.settings = OperatorSettings(dashboard_url_template=url, default_ray_image="rayproject/ray:2.60.0-py311")
        await h.provision()
        await h.reconcile()
        sid = h.status.job_id
        fake.jobs[sid].update(status="FAILED", message="Job entrypoint command failed with exit code 1")
        fake.logs[sid] = ["/home/ray/anaconda3/bin/python: Error while finding module specification for "
                          "'geneva_operator.engine.job' (ModuleNotFoundError: No module named 'geneva_operator')\n"]
        await h.reconcile()
        assert h.status.phase == "Failed" and h.status.reason == "EngineNotInImage" and list(fake.jobs) == [sid]
        assert h.status.message.startswith("spec.cluster.image: the operator's default Ray image rayproject/ray:2.60.0-py311 "
                                           "lacks the backfill engine (No module named 'geneva_operator')")
        assert ("Warning", "EngineNotInImage") in {(t, r) for t, r, _ in h.events}

    run(body)


def test_ray_pods_that_cannot_start_show_in_cluster_ready_and_hold_the_job_back():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.provision()  # KubeRay: the head is ready
        gpu = ps.worker("gpu", "z2m9c", node_label="geneva.lancedb.com/ray-worker-gpu")
        kube.pods[(NS, "bf-ray")] = [ps.running(ps.head()), ps.unschedulable(gpu)]
        await h.reconcile()
        ready = lifecycle.condition(h.status, "ClusterReady")
        assert (ready.status, ready.reason) == ("False", "Unschedulable") and not fake.jobs
        assert "worker group gpu" in ready.message and "geneva.lancedb.com/ray-worker-gpu=true" in ready.message
        kube.pods[(NS, "bf-ray")] = [ps.running(ps.head()), ps.running(gpu)]
        await h.reconcile()
        ready = lifecycle.condition(h.status, "ClusterReady")
        assert ready.reason == "Ready" and len(fake.jobs) == 1
        # The image the pods run, the operator's default here, is on the status too.
        assert ready.message == f"RayCluster bf-ray is ready (image {DEFAULT_RAY_IMAGE})"

    run(body)


def test_the_operator_watches_only_ray_pods_and_indexes_them_by_cluster():
    settings = kopf.OperatorSettings()
    startup.configure(settings)
    pods = kopf.Resource("", "v1", "pods")
    assert settings.watching.label_selectors.collect(pods) == ["ray.io/cluster"]  # the API server filters
    assert settings.watching.label_selectors.collect(kopf.Resource("", "v1", "configmaps")) == []
    pod = ps.unschedulable(ps.head())
    [(key, slim)] = caches.ray_pods(namespace=NS, labels=pod["metadata"]["labels"], body=pod).items()
    assert key == (NS, "bf-ray") and slim == slim_pod(pod)


def test_a_missing_secret_is_waited_for_and_its_arrival_starts_the_run():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token=None)
        await h.reconcile()
        assert h.status.phase == "Pending" and h.status.reason == "AuthSecretNotFound"
        assert h.status.message.startswith("spec.auth.tokenSecretRef")
        assert ("Warning", "AuthSecretNotFound") in {(t, r) for t, r, _ in h.events}
        assert not kube.clusters and not any(c.startswith("create") for c in kube.calls)
        kube.secrets[(NS, "ray-token")] = {"token": TOKEN}  # applied after the backfill
        await h.reconcile()
        assert h.status.phase == "Provisioning" and (NS, "bf-ray") in kube.clusters

    run(body)


def test_missing_existing_cluster_is_waited_for_and_nothing_created():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cluster=None, existingCluster={"name": "shared"})
        h.body["spec"].pop("cluster")
        await h.reconcile()
        assert h.status.phase == "Pending" and h.status.reason == "ExistingClusterNotFound"
        assert "spec.existingCluster.name" in h.status.message
        assert not kube.clusters

    run(body)


def test_wrong_token_fails_the_backfill_without_leaking_it():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token="not-the-token")
        await h.provision()
        await h.reconcile()  # the submission is refused: recorded, for the next reconcile to act on
        assert h.status.last_action_error.reason == "RayAuthenticationFailed" and h.runtime.schedule.due_in(UID) <= 0
        await h.reconcile()
        assert h.status.phase == "Failed" and h.status.reason == "RayAuthenticationFailed"
        assert "spec.auth.tokenSecretRef" in h.status.message
        assert "not-the-token" not in str(h.body["status"]) and "not-the-token" not in str(h.events)

    run(body)


def test_finished_resources_cost_no_requests():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token=None, cleanup={"policy": "Never"})
        h.body["status"] = {"state": "Succeeded", "phase": "Succeeded", "udfVersion": "1", "startTime": "2026-01-01T00:00:00Z",
                            "completionTime": "2026-01-01T01:00:00Z", "rayClusterName": "bf-ray", "attempts": 1}
        assert not backfill._scheduled(status=h.body["status"])  # no daemon: nothing wakes for it
        kube.calls.clear()
        await h.reconcile()
        assert kube.calls == [] and fake.posts == 0
        assert h.runtime.schedule.due_in(UID) is None and len(h.runtime.schedule) == 0

    run(body)


def test_a_cleanup_policy_set_after_the_run_deletes_the_kept_cluster():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cleanup={"policy": "Never"})
        await h.provision()
        await h.reconcile()
        fake.jobs[h.status.job_id]["status"] = "SUCCEEDED"
        await h.reconcile()
        assert h.status.phase == "Succeeded" and not backfill._scheduled(status=h.body["status"])
        h.body["spec"]["cleanup"] = {"policy": "Always", "ttlSecondsAfterFinished": 0}  # the update handler runs
        h.body["metadata"]["generation"] = 2
        await h.reconcile()
        assert kube.calls.count("delete bf-ray") == 1 and (NS, "bf-ray") not in kube.clusters
        assert backfill._scheduled(status=h.body["status"])  # until it is seen gone
        await h.reconcile()
        assert lifecycle.condition(h.status, "ClusterReady").reason == "Deleted" and h.status.phase == "Succeeded"
        assert not backfill._scheduled(status=h.body["status"]) and kube.calls.count("delete bf-ray") == 1

    run(body)


def test_a_finished_backfill_waiting_for_its_ttl_calls_nothing_and_is_next_due_at_the_ttl():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, token=None, cleanup={"policy": "Always", "ttlSecondsAfterFinished": 3600})
        finished = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        h.body["status"] = {"state": "Succeeded", "phase": "Succeeded", "udfVersion": "1", "startTime": finished,
                            "completionTime": finished, "rayClusterName": "bf-ray", "attempts": 1, "cleanupAfter": finished}
        assert backfill._scheduled(status=h.body["status"])
        kube.calls.clear()
        await h.reconcile()
        assert kube.calls == [] and fake.posts == 0
        # asleep until the TTL runs out: not woken every few seconds to find it has not
        assert 3590 < h.runtime.schedule.due_in(UID) <= 3600

    run(body)


def running_harness(url: str, session: aiohttp.ClientSession, fake: FakeRay) -> Awaitable[tuple[Harness, FakeKube]]:
    async def make() -> tuple[Harness, FakeKube]:
        h, kube = harness(url, session, fake)
        await h.provision()
        await h.reconcile()
        fake.jobs[h.status.job_id]["status"] = "RUNNING"
        await h.reconcile()
        assert h.status.phase == "Running"
        return h, kube
    return make()


def test_a_running_job_is_next_looked_at_after_the_poll_interval_and_news_brings_it_forward():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = await running_harness(url, session, fake)
        schedule, settings = h.runtime.schedule, h.runtime.settings
        assert settings.poll_interval_seconds - 1 < schedule.due_in(UID) <= settings.poll_interval_seconds

        on_news = backfill._news(schedule, UID, lambda: settings.progress_interval_seconds)
        follower = LogFollower(h.status.job_id, on_news=on_news)
        follower.feed(ProgressReport(rows_done=1, rows_total=4, fragments_done=1, fragments_total=4).line() + "\n")
        assert schedule.due_in(UID) <= settings.progress_interval_seconds  # one write for several lines
        follower.feed(ProgressReport(rows_done=2, rows_total=4, fragments_done=2, fragments_total=4).line() + "\n")
        assert schedule.due_in(UID) <= settings.progress_interval_seconds
        follower.feed(ResultReport(rows_done=4, rows_total=4, committed_version=3).line() + "\n")
        assert schedule.due_in(UID) <= 0  # the result line: at once

        h.memo.follower = follower
        await h.reconcile()  # Ray still says RUNNING (the driver exiting): looked at again soon
        assert h.status.phase == "Running" and 0 < schedule.due_in(UID) <= backfill.ENDING_RECHECK_SECONDS
        schedule.at(UID, settings.poll_interval_seconds)

        async def end_of_log() -> Any:
            return
            yield

        class Closed:
            def tail_logs(self, _: str) -> Any:
                return end_of_log()

        await follower.follow(Closed())  # ... and the end of the log brings it to now
        assert follower.finished and schedule.due_in(UID) <= 0

    run(body)


def test_progress_is_written_less_often_when_more_logs_are_followed_than_the_write_budget_allows():
    settings = OperatorSettings(progress_interval_seconds=2.0, progress_writes_per_second=50.0)
    assert backfill.progress_interval(settings, 1) == backfill.progress_interval(settings, 100) == 2.0
    assert backfill.progress_interval(settings, 400) == 8.0  # 50 progress writes a second, for all of them

    async def main() -> None:
        schedule, following = backfill.Schedule(), set()
        on_news = backfill._news(schedule, UID, lambda: backfill.progress_interval(settings, len(following)))
        schedule.at(UID, 60.0)
        following.update(f"uid-{i}" for i in range(400))
        on_news(False)
        assert 7.9 < schedule.due_in(UID) <= 8.0
        on_news(True)  # the end of a run is never held back
        assert schedule.due_in(UID) <= 0

    asyncio.run(main())


def test_the_progress_daemon_counts_itself_among_the_followed_logs_while_it_runs():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = await running_harness(url, session, fake)
        stopped = _DaemonStopped()
        daemon = asyncio.ensure_future(backfill.follow_progress(body=h.body, memo=h.memo, stopped=stopped,
                                                                logger=logging.getLogger("test")))
        await asyncio.sleep(0.05)
        assert h.runtime.following == {UID}
        stopped.event.set()
        await asyncio.wait_for(daemon, timeout=5)
        assert h.runtime.following == set()

    run(body)


def test_news_during_a_reconcile_is_kept_for_after_it():
    """The reconcile may have read the follower before the line came: the next time it sets
    must not hide the news."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = await running_harness(url, session, fake)
        schedule = h.runtime.schedule
        real_get_job = fake.get_job_hook

        def news_while_reading(sid: str) -> None:
            schedule.sooner(UID, 0.0)
        fake.get_job_hook = news_while_reading
        await h.reconcile()
        fake.get_job_hook = real_get_job
        assert schedule.due_in(UID) <= 0

    run(body)


def test_the_schedule_daemon_reconciles_when_due_and_leaves_when_stopped():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        await h.reconcile()  # created the cluster; the next look in provisioning_poll_seconds
        kube.make_ready(NS, "bf-ray")
        h.runtime.schedule.at(UID, 0.0)  # say that time came
        stopped = _DaemonStopped()
        daemon = asyncio.ensure_future(backfill.reconcile_when_due(
            body=h.body, memo=h.memo, stopped=stopped, logger=logging.getLogger("test"), ray_clusters=kube.index(),
            backfill_columns={}, ray_pods=kube.pod_index()))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if fake.jobs:
                break
        assert len(fake.jobs) == 1  # it reconciled: the cluster was ready, the job went in
        stopped.event.set()
        await asyncio.wait_for(daemon, timeout=5)
        assert h.runtime.schedule.due_in(UID) is None

    run(body)


def test_the_actions_decided_with_a_status_are_taken_when_kopf_cancels_the_daemon_during_its_write():
    """kopf cancels the schedule's daemon once the watch shows a status without a next time,
    which is often the status its reconcile is still writing. The ClusterDeleted Event is
    decided only once (the written status says the cleanup is done): cut off, it is lost."""
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cleanup={"policy": "Always", "ttlSecondsAfterFinished": 0})
        await h.provision()
        await h.reconcile()
        fake.jobs[h.status.job_id]["status"] = "SUCCEEDED"
        await h.reconcile()  # Succeeded, the TTL is up: ...
        await h.reconcile()  # ... the cluster is deleted
        assert (NS, "bf-ray") not in kube.clusters and backfill._scheduled(status=h.body["status"])
        h.events.clear()

        write, writing, answered = kube.patch_backfill_status, asyncio.Event(), asyncio.Event()

        async def slow_answer(*args: Any) -> Any:
            written = await write(*args)  # the API server has it; the watch may show it first
            writing.set()
            await answered.wait()
            return written
        kube.patch_backfill_status = slow_answer
        h.runtime.schedule.at(UID, 0.0)
        daemon = asyncio.ensure_future(backfill.reconcile_when_due(
            body=h.body, memo=h.memo, stopped=_DaemonStopped(), logger=logging.getLogger("test"),
            ray_clusters=kube.index(), backfill_columns={}, ray_pods=kube.pod_index()))
        await asyncio.wait_for(writing.wait(), timeout=5)
        daemon.cancel()  # the watch brought the settled status: kopf stops the daemon
        with pytest.raises(asyncio.CancelledError):
            await daemon
        answered.set()
        for _ in range(100):
            await asyncio.sleep(0.01)
            if h.events:
                break
        assert [reason for _, reason, _ in h.events] == ["ClusterDeleted"]
        h.catch_up()
        assert lifecycle.condition(h.status, "ClusterReady").reason == "Deleted"
        assert not backfill._scheduled(status=h.body["status"])

    run(body)


def test_status_patch_sets_changes_and_removes_stale_keys():
    old = {"phase": "Running", "jobId": "j", "logTail": "x", "foreign": 1}
    new = BackfillStatus(phase="Failed", job_id="j", attempts=1)
    assert status_patch(old, new) == {"phase": "Failed", "attempts": 1, "conditions": [], "logTail": None}
    assert status_patch(new.to_wire(), new) == {}


def test_parse_status_ignores_unknown_keys():
    assert parse_status({"phase": "Running", "kopf": {"progress": {}}}).phase == "Running"


class _StopFlag:
    """What _until_stopped uses of kopf's DaemonStopped: an awaitable wait()."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    async def wait(self, timeout: Optional[float] = None) -> None:
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except asyncio.TimeoutError:
            pass


class _DaemonStopped(_StopFlag):
    """kopf's DaemonStopped as the schedule's daemon uses it."""

    def __bool__(self) -> bool:
        return self.event.is_set()


def test_the_progress_daemon_leaves_a_blocked_log_tail_when_kopf_stops_it():
    async def main() -> None:
        flag, cancelled = _StopFlag(), asyncio.Event()

        async def endless_tail() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

        waiter = asyncio.ensure_future(backfill._until_stopped(endless_tail(), flag))
        await asyncio.sleep(0)
        assert not waiter.done()
        flag.event.set()
        await asyncio.wait_for(waiter, timeout=5)
        assert cancelled.is_set()

    asyncio.run(main())


def test_the_progress_daemon_sees_the_log_tail_end_or_fail():
    async def main() -> None:
        async def short_tail() -> None:
            return None

        async def broken_tail() -> None:
            raise RayJobError("stream broke")

        await asyncio.wait_for(backfill._until_stopped(short_tail(), _StopFlag()), timeout=5)
        with pytest.raises(RayJobError, match="stream broke"):
            await asyncio.wait_for(backfill._until_stopped(broken_tail(), _StopFlag()), timeout=5)

    asyncio.run(main())


def test_a_spec_is_validated_once_per_generation():
    """kopf's timer filters ask every second for every resource: the parsed spec is kept in
    the resource's memo until metadata.generation moves (any spec change moves it)."""
    memo = kopf.Memo()
    meta = {"uid": UID, "generation": 1}
    first, _ = spec_of(meta, spec_wire(), memo)
    assert spec_of(meta, spec_wire(column="other"), memo)[0] is first  # same generation: same spec
    second, _ = spec_of({"uid": UID, "generation": 2}, spec_wire(column="other"), memo)
    assert second.column == "other"
    assert spec_of(meta, spec_wire(column="x"))[0].column == "x"  # no memo: parsed every time
