"""The operator on KubeRay 1.1 through 1.6, as the handlers see it: features read from the
RayCluster CRD through the API (fakes.FakeKube.read_crd), kept for a while and re-read, a spec
the installed KubeRay cannot serve failed with a reason naming the field and the version
needed, and readiness read the way that KubeRay reports it."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from fakes import NEWEST_CRD, OLDEST_CRD, FakeRay, ray_cluster_crd  # noqa: E402
import pod_statuses as ps  # noqa: E402
from test_reconcile import NS, harness, run  # noqa: E402

from geneva_operator import lifecycle  # noqa: E402
from geneva_operator.cluster.kuberay_features import features_from_crd  # noqa: E402
from geneva_operator.handlers.caches import KubeRayFeaturesCache  # noqa: E402
from geneva_operator.kube import Unreadable  # noqa: E402

GCS_FT = {"gcsFaultTolerance": {"redisAddress": "redis:6379"}}
KUBERAY_1_3 = ray_cluster_crd("status.conditions", "spec.gcsFaultToleranceOptions")


def test_a_spec_the_installed_kuberay_cannot_serve_fails_naming_the_field_and_the_version():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cluster={"autoscaling": {"enabled": True, "version": "v2"}})
        kube.crd = KUBERAY_1_3
        await h.reconcile()
        st = h.status
        assert (st.phase, st.reason) == ("Failed", "KubeRayTooOld")
        assert st.message == ("spec.cluster.autoscaling.version: needs KubeRay >= 1.4 (RayCluster "
                              "spec.autoscalerOptions.version); the installed KubeRay's CRD is that of 1.3")
        failed = lifecycle.condition(st, "Failed")
        assert (failed.status, failed.reason) == ("True", "KubeRayTooOld")
        assert ("Warning", "KubeRayTooOld") in {(t, r) for t, r, _ in h.events}
        assert not kube.clusters and not fake.jobs

    run(body)


def test_on_the_oldest_kuberay_a_plain_spec_runs_and_the_head_pod_confirms_a_sticky_ready_state():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake)
        kube.crd = OLDEST_CRD
        await h.reconcile()
        assert h.status.phase == "Provisioning" and (NS, "bf-ray") in kube.clusters
        # KubeRay 1.1 writes only `state`, and keeps it `ready` while a restarted head is down
        kube.clusters[(NS, "bf-ray")]["status"] = {"state": "ready"}
        kube.pods[(NS, "bf-ray")] = [ps.creating(ps.head())]
        await h.reconcile()
        ready = lifecycle.condition(h.status, "ClusterReady")
        assert ready.status == "False" and "is not Ready" in ready.message and not fake.jobs
        kube.pods[(NS, "bf-ray")] = [ps.running(ps.head())]
        await h.reconcile()
        assert lifecycle.condition(h.status, "ClusterReady").reason == "Ready" and len(fake.jobs) == 1

    run(body)


def test_a_crd_the_operator_may_not_read_means_the_oldest_kuberay_and_says_what_to_grant():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cluster=GCS_FT)
        kube.crd = None  # RBAC: no get on customresourcedefinitions/rayclusters.ray.io
        await h.reconcile()
        assert (h.status.phase, h.status.reason) == ("Failed", "KubeRayUnknown")
        assert h.status.message.startswith("spec.cluster.gcsFaultTolerance: needs KubeRay >= 1.3")
        assert "403 Forbidden" in h.status.message and "grant it get on it" in h.status.message
        assert not kube.clusters

        plain, kube = harness(url, session, fake)
        kube.crd = None
        await plain.reconcile()
        assert plain.status.phase == "Provisioning"
        assert "gcsFaultToleranceOptions" not in kube.clusters[(NS, "bf-ray")]["spec"]

    run(body)


def test_a_kuberay_downgraded_under_a_running_backfill_fails_it_instead_of_raising_at_each_reconcile():
    async def body(fake: FakeRay, url: str, session: aiohttp.ClientSession) -> None:
        h, kube = harness(url, session, fake, cluster=GCS_FT)
        await h.reconcile()
        assert (NS, "bf-ray") in kube.clusters
        h.runtime.kuberay = KubeRayFeaturesCache(kube.read_crd, ttl=0)  # re-read at every reconcile
        kube.crd = OLDEST_CRD
        await h.reconcile()  # the owned cluster is observed, but no RayCluster is built for 1.1
        assert (h.status.phase, h.status.reason) == ("Failed", "KubeRayTooOld")

    run(body)

def test_kuberay_features_are_re_read_after_their_ttl_so_an_upgrade_is_seen():
    async def main() -> None:
        crd, reads, now = [OLDEST_CRD], [], [0.0]

        async def read(name: str) -> dict:
            reads.append(name)
            if isinstance(crd[0], Exception):
                raise crd[0]
            return crd[0]

        cache = KubeRayFeaturesCache(read, ttl=60, clock=lambda: now[0])
        assert (await cache.get()).version == "1.1"
        crd[0] = NEWEST_CRD  # KubeRay upgraded under the operator
        now[0] = 59
        assert (await cache.get()).version == "1.1" and reads == ["rayclusters.ray.io"]
        now[0] = 61
        assert await cache.get() == features_from_crd(NEWEST_CRD) and len(reads) == 2
        # concurrent reconciles at expiry share one read
        now[0] = 200
        await asyncio.gather(*(cache.get() for _ in range(5)))
        assert len(reads) == 3

        # a transient failure keeps what was known; RBAC refusal is the oldest KubeRay's
        crd[0], now[0] = ConnectionError("apiserver restarting"), 300
        assert (await cache.get()).version == "1.6"
        crd[0], now[0] = Unreadable("403 Forbidden: get customresourcedefinitions/rayclusters.ray.io"), 400
        assert (await cache.get()).unreadable.startswith("403 Forbidden")

        # without anything known, a transient failure is the reconcile's (retried)
        fresh = KubeRayFeaturesCache(read, ttl=60, clock=lambda: now[0])
        crd[0] = ConnectionError("apiserver restarting")
        with pytest.raises(ConnectionError):
            await fresh.get()

    asyncio.run(main())
