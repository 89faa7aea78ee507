"""The KubeRay compatibility matrix: the core of a backfill's life against every KubeRay of
tests/controlplane/versions.env KUBERAY_VERSIONS (the rest of this tier runs against the oldest
and the newest, see tests/conftest.py), each on a control plane of its own running that
KubeRay's operator and CRDs.

Core: create the RayCluster, see it ready the way that KubeRay reports it, progress, a worker
count change patched into the running cluster in place, Succeeded with the exact column, and
cleanup. Plus what the operator read from that KubeRay's CRD through the API server, and a spec
that KubeRay cannot serve refused naming the version needed (or, where it can, kept by the API
server rather than pruned).
"""
from __future__ import annotations

import json

import pytest

from tests.controlplane.harness import wait_until

import operator_fixtures as fx  # noqa: E402

pytestmark = pytest.mark.kuberay_matrix

NAME = fx.example_manifest()["metadata"]["name"]
CLUSTER = f"{NAME}-ray"
COLUMN = fx.example_manifest()["spec"]["column"]
GROUP = fx.example_manifest()["spec"]["cluster"]["workerGroups"][0]


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.lstrip("v").split(".")
    return int(major), int(minor_)


def _diag(control_plane, operator, ns: str):
    return lambda: "\n" + control_plane.kubectl("get", "genevabackfills,rayclusters,pods", "-n", ns, "-o", "wide",
                                                check=False).stdout + "\n" + operator.log_tail()


def _workers(api, ns: str) -> list:
    return [p for p in api.pods(ns, CLUSTER) if p.metadata.labels.get("ray.io/node-type") == "worker"
            and p.metadata.deletion_timestamp is None]


def test_core_backfill_create_ready_progress_patch_in_place_succeed_cleanup(control_plane, api, operator, e2e_namespace,
                                                                          table, ray_jobs, kuberay_version):
    ns, (db, captions) = e2e_namespace, table
    diag = _diag(control_plane, operator, ns)
    # ~30 s of work (4 fragments x 10 batches x 0.75 s), committed per fragment: a run to change.
    fx.apply(control_plane, fx.backfill_manifest(ns, db, udf=fx.slow_udf(sleep_per_batch=0.75, batch_size=500), commitEvery=1,
                                           cleanup={"policy": "OnSuccess", "ttlSecondsAfterFinished": 5}))
    uid = api.get("backfill", ns, NAME)["metadata"]["uid"]

    rc = api.wait("raycluster", ns, CLUSTER, lambda o: o is not None, "the RayCluster", 60, on_timeout=diag)
    running = api.wait("backfill", ns, NAME, lambda o: fx.rows_done(o) > 0 or fx.phase(o) in ("Succeeded", "Failed"),
                       "the first committed progress", 180, on_timeout=diag)
    assert fx.phase(running) == "Running" and 0 < fx.rows_done(running) < fx.ROWS, json.dumps(running["status"], indent=1)
    ready = fx.conditions(running)["ClusterReady"]
    assert (ready["status"], ready["reason"]) == ("True", "Ready"), ready
    # KubeRay's own report, as that release writes it: conditions from 1.3, `state` before
    status = api.get("raycluster", ns, CLUSTER)["status"]
    kinds = {c["type"] for c in status.get("conditions") or []}
    if kuberay_version and minor(kuberay_version) >= (1, 3):
        assert "HeadPodReady" in kinds, status
    elif kuberay_version:
        assert "HeadPodReady" not in kinds and status["state"] == "ready", status

    # One worker fewer while the job runs: patched into the same RayCluster, never recreated.
    one_less = [{**GROUP, "replicas": GROUP["replicas"] - 1}]
    control_plane.kubectl("patch", "genevabackfill", NAME, "-n", ns, "--type=merge",
                          "-p", json.dumps({"spec": {"cluster": {"workerGroups": one_less}}}))
    patched = api.wait("raycluster", ns, CLUSTER,
                       lambda o: (o or {}).get("spec", {}).get("workerGroupSpecs", [{}])[0].get("replicas") == GROUP["replicas"] - 1,
                       "the worker count patched in place", 60, on_timeout=diag)
    assert patched["metadata"]["uid"] == rc["metadata"]["uid"]
    wait_until(f"{GROUP['replicas'] - 1} worker pod(s)", lambda: len(_workers(api, ns)) == GROUP["replicas"] - 1,
               timeout=60, interval=0.5, on_timeout=diag)

    done = api.wait("backfill", ns, NAME, lambda o: fx.phase(o) in ("Succeeded", "Failed"), "a finished run", 240,
                    on_timeout=diag)
    st = done["status"]
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert st["progress"]["percent"] == 100 and st["attempts"] == 1
    assert "ClusterOutdated" not in fx.conditions(done), fx.conditions(done)
    [job] = ray_jobs.jobs_of(uid)
    assert job["submission_id"] == st["jobId"] and job["status"] == "SUCCEEDED"
    assert fx.read_column(db, COLUMN) == fx.expected_lengths(captions)

    # Cleanup (OnSuccess, 5 s): the RayCluster and then its pods go.
    api.wait("raycluster", ns, CLUSTER, lambda o: o is None, "the RayCluster deleted after the TTL", 60, on_timeout=diag)
    wait_until("the Ray pods gone", lambda: api.pods(ns, CLUSTER) == [], timeout=60, interval=0.5, on_timeout=diag)
    cleaned = api.wait("backfill", ns, NAME, lambda o: fx.conditions(o).get("ClusterReady", {}).get("reason") == "Deleted",
                       "ClusterReady reason Deleted", 30, on_timeout=diag)
    assert fx.phase(cleaned) == "Succeeded"


def test_the_operator_reads_this_kuberays_features_and_refuses_what_it_lacks(control_plane, api, operator,
                                                                             e2e_namespace, table, kuberay_version):
    ns, (db, _) = e2e_namespace, table
    diag = _diag(control_plane, operator, ns)
    version = minor(kuberay_version) if kuberay_version else None
    if version is not None:
        # what the operator read from the CRD through the API server (cluster/kuberay_features.py)
        wait_until("the operator's reading of the KubeRay CRD",
                   lambda: f"installed KubeRay: KubeRay >= {version[0]}.{version[1]} (RayCluster CRD)"
                   in operator.log_path.read_text(errors="replace"),
                   timeout=30, interval=0.5, on_timeout=lambda: operator.log_tail())

    v2 = {"autoscaling": {"enabled": True, "version": "v2"}}
    if version is not None and version < (1, 3):
        spec, field, needs = {"gcsFaultTolerance": {"redisAddress": "redis:6379"}}, "spec.cluster.gcsFaultTolerance", "1.3"
    elif version is not None and version < (1, 4):
        spec, field, needs = v2, "spec.cluster.autoscaling.version", "1.4"
    else:
        spec, field, needs = v2, None, None
    fx.apply(control_plane, fx.backfill_manifest(ns, db, cluster=spec))

    if field is None:  # this KubeRay has it: the API server keeps what the operator wrote
        rc = api.wait("raycluster", ns, CLUSTER, lambda o: o is not None, "the RayCluster", 60, on_timeout=diag)
        assert rc["spec"]["autoscalerOptions"]["version"] == "v2", rc["spec"]["autoscalerOptions"]
        return
    failed = api.wait("backfill", ns, NAME, lambda o: fx.phase(o) == "Failed", "Failed", 60, on_timeout=diag)
    st = failed["status"]
    assert st["reason"] == "KubeRayTooOld", json.dumps(st, indent=1)
    assert st["message"].startswith(f"{field}: needs KubeRay >= {needs}"), st["message"]
    assert fx.conditions(failed)["Failed"]["reason"] == "KubeRayTooOld"
    assert api.get("raycluster", ns, CLUSTER) is None
