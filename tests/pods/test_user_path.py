"""A user's first real run, on real pods: `helm install` of the chart (the operator is a pod),
`kubectl apply` of the README's example pointed at a table on S3, with the default image; the
head and workers are KubeRay's pods running real Ray, the job runs in the head pod, the
operator reaches the dashboard through the head Service, and the column comes out exact.

Then what real pods add to the story: token authentication between operator, head and
workers; the autoscaler starting a worker for the job and removing it when idle; a worker pod
and the head pod deleted mid-run.
"""

from __future__ import annotations

import pytest

from tests.cluster.operator_fixtures import SLOW_LENGTH_SOURCE, conditions, phase, rows_done
from tests.controlplane.node import NODE_NAME

from realpods import (
    BUCKET,
    FRAGMENTS,
    ROWS,
    TOKEN_SECRET,
    dashboard,
    head_pod,
    lengths,
    make_table,
    pods_of,
    read_column,
    readme_example,
    running,
    secret_value,
    wait_for,
)

DEFAULT_IMAGE = "ghcr.io/lancedb/geneva-ray-worker:0.1.0"
# Ray's first start in a fresh pod plus a job on 2 busy cores: minutes, not seconds.
RUN_TIMEOUT = 600


def _backfill(cluster, ns: str, name: str) -> dict:
    return cluster.kubectl_json("get", "genevabackfill", name, "-n", ns)


def _data_files(s3, ns: str) -> set[str]:
    """The table's data files: one is written per fragment computed, committed or not."""
    keys = set()
    for page in s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{ns}/captions.lance/data/"):
        keys |= {o["Key"] for o in page.get("Contents", [])}
    return keys


def _slow(sleep_per_batch: float, batch_size: int = 500) -> dict:
    return {"function": "pods_slow:SlowLength", "source": SLOW_LENGTH_SOURCE, "kind": "Batch",
            "inputColumns": ["caption"], "outputType": "int32", "batchSize": batch_size,
            "initArgs": {"sleep_per_batch": sleep_per_batch}, "resources": {"cpu": 1}}


class _SlowRun:
    """The README's example with a UDF slowed to ~9 s per fragment and a commit per fragment,
    applied: a run long enough to act in while it goes."""

    def __init__(self, k, s3, ns: str, helm, **overrides):
        self.k, self.ns, self.helm = k, ns, helm
        self.uri = f"s3://{BUCKET}/{ns}"
        self.captions = make_table(s3, self.uri)
        self.before = _data_files(s3, ns)
        # 4 fragments x 6 batches x 1.5 s, committed one by one.
        self.manifest = readme_example(ns, s3, self.uri, udf=_slow(1.5), commitEvery=1, **overrides)
        self.name = self.manifest["metadata"]["name"]
        self.ray_cluster = f"{self.name}-ray"
        k.apply(self.manifest)

    def wait(self, what, check, timeout=RUN_TIMEOUT, interval=1.0):
        return wait_for(what, check, timeout, self.k, self.ns, self.helm, interval=interval)


def test_the_readme_example_fills_the_column_on_real_pods(pods_cluster, operator_release, s3, user_namespace):
    ns, k = user_namespace, pods_cluster
    uri = f"s3://{BUCKET}/{ns}"
    captions = make_table(s3, uri)
    manifest = readme_example(ns, s3, uri)
    name = manifest["metadata"]["name"]
    ray_cluster = f"{name}-ray"
    k.apply(manifest)

    def wait(what, check, timeout=RUN_TIMEOUT):
        return wait_for(what, check, timeout, k, ns, operator_release)

    head = wait("the head pod running", lambda: (lambda p: p if p and running(p) else None)(
        head_pod(k, ns, ray_cluster)))
    assert head["spec"]["nodeName"] == NODE_NAME
    images = {c["image"] for c in head["spec"]["containers"]}
    assert images == {DEFAULT_IMAGE}, images  # no spec.cluster.image: the operator's default

    # Token authentication is on: the dashboard refuses a request without the Secret's token.
    token = secret_value(k, ns, TOKEN_SECRET, "token")
    status, _ = dashboard(head, "/api/jobs/")
    assert status in (401, 403), status

    bf = wait("the job submitted", lambda: (lambda b: b if (b.get("status") or {}).get("jobId") else None)(
        _backfill(k, ns, name)))
    job_id = bf["status"]["jobId"]
    # The driver runs in the head pod: Ray reports its node's address, the head pod's IP.
    job = wait("the job's driver started", lambda: (lambda r: r[1] if r[0] == 200 and (r[1].get("driver_info") or {})
                                                   .get("node_ip_address") else None)(
        dashboard(head, f"/api/jobs/{job_id}", token)))
    assert job["driver_info"]["node_ip_address"] == head["status"]["podIP"]
    workers = [p for p in pods_of(k, ns, ray_cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]
    assert len(workers) == 2 and all(p["spec"]["nodeName"] == NODE_NAME for p in workers)

    done = wait("Succeeded", lambda: (lambda b: b if phase(b) in ("Succeeded", "Failed") else None)(
        _backfill(k, ns, name)))
    assert phase(done) == "Succeeded", done["status"]
    assert read_column(s3, uri, manifest["spec"]["column"]) == lengths(captions)  # row by row
    progress = done["status"]["progress"]
    assert (progress["rowsDone"], progress["rowsTotal"], progress["fragmentsDone"]) == (ROWS, ROWS, FRAGMENTS)
    assert conditions(done)["Complete"]["status"] == "True"

    # cleanup (OnSuccess, no TTL): the RayCluster and every pod of it are deleted
    wait("the RayCluster deleted", lambda: not k.kubectl(
        "get", "raycluster", ray_cluster, "-n", ns, "--ignore-not-found", "-o", "name").stdout.strip())
    wait("its pods gone", lambda: not pods_of(k, ns, ray_cluster), timeout=180)


def test_progress_moves_and_a_lost_worker_pod_costs_only_its_fragments(pods_cluster, operator_release, s3,
                                                                        user_namespace, record_property):
    ns, k = user_namespace, pods_cluster
    run = _SlowRun(k, s3, ns, operator_release)
    uri, captions, before, manifest, name, ray_cluster, wait = (
        run.uri, run.captions, run.before, run.manifest, run.name, run.ray_cluster, run.wait)

    seen: list[int] = []

    def partial():
        b = _backfill(k, ns, name)
        seen.append(rows_done(b))
        return b if 0 < rows_done(b) < ROWS else None

    wait("progress between 0 and all rows", partial, interval=0.5)
    victim = next(p for p in pods_of(k, ns, ray_cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "worker")
    k.kubectl("delete", "pod", victim["metadata"]["name"], "-n", ns, "--wait=false")

    done = wait("finished", lambda: (lambda b: b if phase(b) in ("Succeeded", "Failed") else None)(_backfill(k, ns, name)))
    assert phase(done) == "Succeeded", done["status"]
    assert read_column(s3, uri, manifest["spec"]["column"]) == lengths(captions)
    progress_values = sorted(set(seen))
    assert any(0 < v < ROWS for v in progress_values), progress_values  # it moved during the run
    redone = len(_data_files(s3, ns) - before) - FRAGMENTS
    record_property("fragments_redone_after_worker_loss", redone)
    print(f"worker pod deleted mid-run: {redone} of {FRAGMENTS} fragments computed twice")
    assert 0 <= redone <= 2  # at most those in flight (two workers, one task each)


def test_a_deleted_head_pod_fails_the_attempt_and_the_retry_resumes(pods_cluster, operator_release, s3,
                                                                     user_namespace, record_property):
    ns, k = user_namespace, pods_cluster
    run = _SlowRun(k, s3, ns, operator_release, backoffLimit=2)
    uri, captions, before, manifest, name, ray_cluster, wait = (
        run.uri, run.captions, run.before, run.manifest, run.name, run.ray_cluster, run.wait)

    first = wait("a fragment committed", lambda: (lambda b: b if (b["status"].get("progress") or {}).get(
        "fragmentsDone", 0) >= 1 else None)(_backfill(k, ns, name)), interval=0.5)
    committed_before = first["status"]["progress"]["fragmentsDone"]
    head = head_pod(k, ns, ray_cluster)
    k.kubectl("delete", "pod", head["metadata"]["name"], "-n", ns, "--wait=false")

    done = wait("finished", lambda: (lambda b: b if phase(b) in ("Succeeded", "Failed") else None)(_backfill(k, ns, name)),
                timeout=2 * RUN_TIMEOUT)
    assert phase(done) == "Succeeded", done["status"]
    assert done["status"]["attempts"] >= 2  # the first attempt died with its head
    assert read_column(s3, uri, manifest["spec"]["column"]) == lengths(captions)
    computed = len(_data_files(s3, ns) - before)
    recomputed = computed - FRAGMENTS
    record_property("fragments_recomputed_after_head_loss", recomputed)
    print(f"head pod deleted after {committed_before} committed fragments: {recomputed} of {FRAGMENTS} "
          f"fragments computed again on the new head")
    assert 0 <= recomputed <= 2  # committed fragments are never recomputed: only those in flight


def test_the_autoscaler_starts_a_worker_for_the_job_and_removes_it_when_idle(pods_cluster, operator_release, s3,
                                                                             user_namespace):
    ns, k = user_namespace, pods_cluster
    uri = f"s3://{BUCKET}/{ns}"
    captions = make_table(s3, uri, rows=3000, fragments=2)
    manifest = readme_example(ns, s3, uri, cleanup={"policy": "Never"})
    spec = manifest["spec"]
    spec["cluster"]["workerGroups"] = [{"name": "cpu", "type": "cpu", "cpu": "500m", "memory": "1536Mi",
                                        "replicas": 0, "minReplicas": 0, "maxReplicas": 1}]
    spec["cluster"]["autoscaling"] = {"enabled": True, "idleTimeoutSeconds": 15}
    name = manifest["metadata"]["name"]
    ray_cluster = f"{name}-ray"
    k.apply(manifest)

    def workers() -> list[dict]:
        return [p for p in pods_of(k, ns, ray_cluster) if p["metadata"]["labels"].get("ray.io/node-type") == "worker"]

    def wait(what, check, timeout=RUN_TIMEOUT):
        return wait_for(what, check, timeout, k, ns, operator_release)

    wait("the head pod running", lambda: (lambda p: p if p and running(p) else None)(head_pod(k, ns, ray_cluster)))
    started = wait("a worker started for the job", lambda: [p for p in workers() if running(p)])
    assert len(started) == 1
    done = wait("finished", lambda: (lambda b: b if phase(b) in ("Succeeded", "Failed") else None)(_backfill(k, ns, name)))
    assert phase(done) == "Succeeded", done["status"]
    assert read_column(s3, uri, spec["column"]) == lengths(captions)
    # idle for idleTimeoutSeconds: the autoscaler scales the group back to minReplicas 0
    wait("the idle worker removed", lambda: not workers(), timeout=300)


@pytest.fixture(autouse=True)
def _print_operator_log_on_failure(request, operator_release):
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(operator_release.operator_logs(200))
