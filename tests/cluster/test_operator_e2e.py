"""End-to-end, driven as a user would: `kubectl apply -f crds/`, the real operator (`kopf run`),
a real local LanceDB table, `kubectl apply` of examples/backfill.yaml; then the real KubeRay
operator, scheduler and kwok do their part, the job runs on a local Ray standing in for the
RayCluster's head (the operator's GENEVA_DASHBOARD_URL_TEMPLATE), and the table, the status,
the events and the RayCluster are checked. Plus: the API server's validation (CEL rules,
schema, `kubectl explain`), a failing UDF, and the mid-run cases (delete, operator restart,
suspend/resume) on a UDF slowed down by a sleep per batch, acting only once the status shows
the first committed progress.

No sleeps-and-retries: every wait is a watch (the kubernetes client) or a poll with a deadline.
"""
from __future__ import annotations

import json
from typing import Optional

import pytest

from tests.controlplane.harness import CPU_LABEL, HEAD_LABEL, KubectlError, wait_until

from operator_fixtures import (  # noqa: E402
    FAILING_SOURCE,
    FINALIZER,
    FRAGMENTS,
    REPO,
    ROWS,
    TOKEN_SECRET,
    apply,
    backfill_manifest,
    conditions,
    example_manifest,
    expected_lengths,
    phase,
    read_column,
    rows_done,
    slow_udf,
)

NAME = example_manifest()["metadata"]["name"]
CLUSTER = f"{NAME}-ray"
COLUMN = example_manifest()["spec"]["column"]
FINISHED = ("Succeeded", "Failed")

# The mid-run UDF: 4 fragments x 10 batches of 500 rows x 0.5 s = ~20 s of work, committed
# after every fragment: the first progress comes ~5 s in, ~15 s remain to act in.
SLOW = dict(udf=slow_udf(sleep_per_batch=0.5, batch_size=500), commitEvery=1)


def _diagnostics(control_plane, operator, namespace: str) -> str:
    out = control_plane.kubectl("get", "genevabackfills,rayclusters,pods,events", "-n", namespace, "-o", "wide",
                                check=False).stdout
    return f"\n{out}\n{operator.log_tail()}"


def _wait_backfill(api, control_plane, operator, ns, predicate, what, timeout=180, name=NAME):
    return api.wait("backfill", ns, name, predicate, what, timeout,
                    on_timeout=lambda: _diagnostics(control_plane, operator, ns))


def _finished(obj: Optional[dict]) -> bool:
    return phase(obj) in FINISHED


def _ready(pod) -> bool:
    conds = {c.type: c.status for c in (pod.status.conditions or [])}
    return pod.status.phase == "Running" and conds.get("Ready") == "True"


def _job_state(ray_jobs, submission_id: str, states: tuple[str, ...], timeout: float = 60) -> dict:
    return wait_until(f"Ray job {submission_id} in {states}",
                      lambda: (lambda j: j if j["status"] in states else None)(ray_jobs.job(submission_id)),
                      timeout=timeout, interval=0.5)


def _events(api, ns: str, reasons: set[str], timeout: float = 30) -> list[dict]:
    """The backfill's Events once every reason in `reasons` is among them (kopf posts them
    asynchronously)."""
    return wait_until(f"events {sorted(reasons)}",
                      lambda: (lambda evs: evs if reasons <= {e["reason"] for e in evs} else None)(api.events(ns, NAME)),
                      timeout=timeout, interval=0.5,
                      on_timeout=lambda: f"; events: {api.events(ns, NAME)}")


def _job_result(ray_jobs, submission_id: str) -> dict:
    line = next(line for line in ray_jobs.logs(submission_id).splitlines() if line.startswith("GENEVA_RESULT "))
    return json.loads(line.split(" ", 1)[1])


# ---------------------------------------------------------------- the API server's side


def test_kubectl_explain_shows_the_schema(control_plane, crd):
    # The CRD's OpenAPI is published a moment after it is established.
    out = wait_until("kubectl explain genevabackfill.spec.udf",
                     lambda: control_plane.kubectl("explain", "genevabackfill.spec.udf").stdout,
                     timeout=60, interval=0.5)
    assert "KIND:       GenevaBackfill" in out
    for field in ("function", "inputColumns", "outputType", "initArgs", "batchSize"):
        assert field in out
    assert "module:attribute of the function or class" in out
    leaf = control_plane.kubectl("explain", "genevabackfill.spec.udf.kind").stdout
    assert "Batch" in leaf and "RecordBatch" in leaf and "Scalar" in leaf


def _invalid(manifest: dict, path: tuple, value) -> dict:
    node = manifest
    for key in path[:-1]:
        node = node[key]
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return manifest


INVALID = {
    "cluster-and-existingCluster": (("spec", "existingCluster"), {"name": "shared-ray"},
                                    "exactly one of cluster and existingCluster must be set"),
    "neither-cluster-nor-existingCluster": (("spec", "cluster"), None,
                                            "exactly one of cluster and existingCluster must be set"),
    "minReplicas-above-replicas": (("spec", "cluster", "workerGroups"),
                                   [{"name": "cpu", "replicas": 1, "minReplicas": 2, "maxReplicas": 3}],
                                   "minReplicas must not exceed replicas"),
    "replicas-above-maxReplicas": (("spec", "cluster", "workerGroups"),
                                   [{"name": "cpu", "replicas": 4, "minReplicas": 0, "maxReplicas": 3}],
                                   "replicas must not exceed maxReplicas"),
    "secret-in-storageOptions": (("spec", "table", "storageOptions"),
                                 {"region": "us-east-1", "aws_secret_access_key": "abc"},
                                 "storageOptions must not hold credentials"),
    "unknown-udf-kind": (("spec", "udf", "kind"), "Vectorized", 'Unsupported value: "Vectorized"'),
    "missing-udf": (("spec", "udf"), None, "spec.udf: Required value"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_resource_rejected_by_the_api_server(control_plane, crd, namespace, tmp_path, case):
    path, value, message = INVALID[case]
    manifest = _invalid(backfill_manifest(namespace, tmp_path / "db"), path, value)
    with pytest.raises(KubectlError) as err:
        apply(control_plane, manifest)
    assert "is invalid" in str(err.value) and message in str(err.value), str(err.value)
    assert control_plane.kubectl("get", "genevabackfills", "-n", namespace, "-o", "name").stdout == ""


def test_immutable_fields_rejected_on_update(control_plane, crd, namespace, tmp_path):
    # `namespace` is not watched by the operator: this only exercises the API server.
    manifest = backfill_manifest(namespace, tmp_path / "db")
    apply(control_plane, manifest)
    for path, value, message in [(("spec", "column"), "other_col", "column is immutable"),
                                 (("spec", "table", "uri"), "s3://elsewhere/db", "uri is immutable")]:
        changed = _invalid(backfill_manifest(namespace, tmp_path / "db"), path, value)
        with pytest.raises(KubectlError, match=message):
            apply(control_plane, changed)
    # a new udf version is a new run of the same backfill: allowed
    apply(control_plane, _invalid(backfill_manifest(namespace, tmp_path / "db"), ("spec", "udf", "version"), "2"))


# ---------------------------------------------------------------- a whole run


def test_backfill_end_to_end(control_plane, api, operator, e2e_namespace, table, ray_jobs, local_ray):
    ns, (db, captions) = e2e_namespace, table
    k = control_plane.kubectl
    manifest = backfill_manifest(ns, db, cleanup={"policy": "OnSuccess", "ttlSecondsAfterFinished": 5})
    apply(control_plane, manifest)
    uid = api.get("backfill", ns, NAME)["metadata"]["uid"]
    diag = lambda: _diagnostics(control_plane, operator, ns)  # noqa: E731

    # The operator creates the RayCluster, owned by the backfill (finalizer on the backfill).
    rc = api.wait("raycluster", ns, CLUSTER, lambda o: o is not None, "the RayCluster", 60, on_timeout=diag)
    assert [(o["kind"], o["name"], o["uid"], o["controller"]) for o in rc["metadata"]["ownerReferences"]] == \
        [("GenevaBackfill", NAME, uid, True)]
    assert FINALIZER in api.get("backfill", ns, NAME)["metadata"]["finalizers"]

    # KubeRay creates the head and the two workers; the scheduler binds each to the node with
    # the matching geneva label; kwok runs them; KubeRay then reports the cluster ready.
    pods = wait_until("3 Running+Ready pods", lambda: (lambda ps: ps if len(ps) == 3 and all(map(_ready, ps)) else None)(
        api.pods(ns, CLUSTER)), timeout=90, interval=0.5, on_timeout=diag)
    placement = sorted((p.metadata.labels["ray.io/node-type"], p.spec.node_name) for p in pods)
    assert placement == [("head", "ray-head-0"), ("worker", "ray-cpu-0"), ("worker", "ray-cpu-0")]
    nodes = {n.metadata.name: n.metadata.labels for n in api.core.list_node().items}
    for p in pods:
        label = HEAD_LABEL if p.metadata.labels["ray.io/node-type"] == "head" else CPU_LABEL
        assert p.spec.node_selector == {label: "true"} and nodes[p.spec.node_name][label] == "true"
        assert p.spec.service_account_name == "geneva-ray-runner"
    api.wait("raycluster", ns, CLUSTER, lambda o: (o or {}).get("status", {}).get("state") == "ready",
             "RayCluster state ready", 60, on_timeout=diag)

    # The job runs on the local Ray through the operator's dashboard URL setting, to the end.
    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run", timeout=240)
    st = done["status"]
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert st["dashboardURL"] == local_ray.address and st["rayClusterName"] == CLUSTER
    assert st["progress"]["percent"] == 100
    assert (st["progress"]["rowsDone"], st["progress"]["rowsTotal"]) == (ROWS, ROWS)
    assert (st["progress"]["fragmentsDone"], st["progress"]["fragmentsTotal"]) == (FRAGMENTS, FRAGMENTS)
    assert st["rows"] == "20.0K/20.0K" and st["attempts"] == 1 and st["udfVersion"] == "1"
    assert st["observedGeneration"] == done["metadata"]["generation"]
    cond = {t: (c["status"], c["reason"]) for t, c in conditions(done).items()}
    assert cond == {"ClusterReady": ("True", "Ready"), "JobSubmitted": ("True", "Submitted"),
                    "Progressing": ("False", "JobSucceeded"), "Complete": ("True", "JobSucceeded"),
                    "Failed": ("False", "JobSucceeded"), "Suspended": ("False", "RunStarted")}

    [job] = ray_jobs.jobs_of(uid)
    assert job["submission_id"] == st["jobId"] and job["status"] == "SUCCEEDED"
    assert job["entrypoint"].startswith("python -m geneva_operator.engine.job ")
    assert job["runtime_env"]["env_vars"]["PYTHONPATH"] == str(REPO)
    assert job["metadata"]["geneva.lancedb.com/backfill"] == f"{ns}/{NAME}"
    assert st["tableVersion"] == _job_result(ray_jobs, job["submission_id"])["committedVersion"]

    # The column holds exactly the expected values (nulls stay null).
    assert read_column(db, COLUMN) == expected_lengths(captions)

    # kubectl get shows the printer columns; -o wide adds the priority-1 ones.
    out = k("get", "genevabackfills", "-n", ns).stdout.splitlines()
    assert out[0].split() == ["NAME", "PHASE", "PROGRESS", "ROWS", "CLUSTER", "AGE"]
    assert out[1].split()[:5] == [NAME, "Succeeded", "100", "20.0K/20.0K", CLUSTER]
    wide = k("get", "gbf", NAME, "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-3:] == ["COLUMN", "UDF-VERSION", "AGE"] and wide[1].split()[5:7] == [COLUMN, "1"]

    # Cleanup policy OnSuccess, TTL 5 s: the RayCluster goes, then its pods (GC).
    api.wait("raycluster", ns, CLUSTER, lambda o: o is None, "the RayCluster deleted after the TTL", 60, on_timeout=diag)
    wait_until("the Ray pods gone", lambda: api.pods(ns, CLUSTER) == [], timeout=60, interval=0.5, on_timeout=diag)
    cleaned = _wait_backfill(api, control_plane, operator, ns,
                             lambda o: conditions(o).get("ClusterReady", {}).get("reason") == "Deleted",
                             "ClusterReady reason Deleted", timeout=30)
    assert phase(cleaned) == "Succeeded"

    # Every transition was recorded as an Event, once.
    events = _events(api, ns, {"RunStarted", "CreatingCluster", "JobSubmitted", "JobRunning", "JobSucceeded",
                               "ClusterDeleted"})
    reasons = [e["reason"] for e in events]
    for once in ("RunStarted", "CreatingCluster", "JobSubmitted", "JobSucceeded", "ClusterDeleted"):
        assert reasons.count(once) == 1, events
    assert all(e["type"] == "Normal" for e in events), events


def test_failing_udf_retries_then_fails_with_reason_and_log_tail(control_plane, api, operator, e2e_namespace, table,
                                                                   ray_jobs):
    ns, (db, _) = e2e_namespace, table
    manifest = backfill_manifest(
        ns, db, backoffLimit=1, cleanup={"policy": "OnSuccess", "ttlSecondsAfterFinished": 0},
        udf={"function": "e2e_failing:explode", "source": FAILING_SOURCE, "inputColumns": ["caption"],
             "outputType": "int32", "version": "1"})
    apply(control_plane, manifest)
    uid = api.get("backfill", ns, NAME)["metadata"]["uid"]

    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run", timeout=240)
    st = done["status"]
    assert st["phase"] == "Failed" and st["reason"] == "BackoffLimitExceeded", json.dumps(st, indent=1)
    assert st["attempts"] == 2 and "backoffLimit 1 reached" in st["message"]
    assert "e2e: this udf fails on purpose" in st["logTail"], st["logTail"]
    cond = conditions(done)
    assert (cond["Failed"]["status"], cond["Failed"]["reason"]) == ("True", "BackoffLimitExceeded")
    assert (cond["Complete"]["status"], cond["Progressing"]["status"]) == ("False", "False")

    # One Ray job per attempt (backoffLimit 1: two), both failed.
    jobs = ray_jobs.jobs_of(uid)
    assert sorted(j["metadata"]["geneva.lancedb.com/attempt"] for j in jobs) == ["1", "2"]
    assert {j["status"] for j in jobs} == {"FAILED"}

    events = _events(api, ns, {"JobFailed", "BackoffLimitExceeded"})
    assert {e["type"] for e in events if e["reason"] in ("JobFailed", "BackoffLimitExceeded")} == {"Warning"}

    # The table is untouched (nothing is committed before a first group of fragments is
    # computed) and, per policy OnSuccess, the failed cluster stays for debugging.
    import lance

    assert COLUMN not in lance.dataset(str(db / "captions.lance")).schema.names
    assert api.get("raycluster", ns, CLUSTER) is not None
    assert conditions(api.get("backfill", ns, NAME))["ClusterReady"]["reason"] != "Deleted"


def test_a_backfill_applied_before_its_token_secret_waits_for_it(control_plane, api, operator, e2e_namespace, table,
                                                                 local_ray):
    """`kubectl apply -f dir/` or a GitOps sync may create the backfill before its Secret."""
    ns, (db, captions) = e2e_namespace, table
    k = control_plane.kubectl
    k("delete", "secret", TOKEN_SECRET, "-n", ns)
    apply(control_plane, backfill_manifest(ns, db))

    waiting = _wait_backfill(api, control_plane, operator, ns, lambda o: (o or {}).get("status", {}).get("reason")
                             == "AuthSecretNotFound", "reason AuthSecretNotFound")
    assert phase(waiting) == "Pending" and "spec.auth.tokenSecretRef" in waiting["status"]["message"]
    assert [e["type"] for e in _events(api, ns, {"AuthSecretNotFound"}) if e["reason"] == "AuthSecretNotFound"] == ["Warning"]
    assert api.get("raycluster", ns, CLUSTER) is None

    k("create", "secret", "generic", TOKEN_SECRET, f"--from-literal=token={local_ray.token}", "-n", ns)
    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run", timeout=240)
    assert phase(done) == "Succeeded", json.dumps(done["status"], indent=1)
    assert read_column(db, COLUMN) == expected_lengths(captions)


@pytest.mark.parametrize("cluster, who, selector, scheduler_says", [
    # A label no node carries: every pod, the head first, waits for a node.
    ({"nodeSelector": {"geneva.lancedb.com/pool": "nowhere"}}, "head pod",
     f"geneva.lancedb.com/pool=nowhere, {HEAD_LABEL}=true", "didn't match Pod's node affinity/selector"),
    # The head runs, but no node takes the GPU workers (the kwok GPU node has 2 GPUs): a job
    # submitted to that head would wait for them forever.
    ({"workerGroups": [{"name": "gpu", "type": "gpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 1,
                        "cpu": "1", "memory": "1Gi", "gpu": 4}]}, "worker group gpu",
     "geneva.lancedb.com/ray-worker-gpu=true", "Insufficient nvidia.com/gpu"),
], ids=["label-on-no-node", "gpu-workers-fit-no-node"])
def test_ray_pods_no_node_takes_show_why_and_fail_at_the_startup_deadline(control_plane, api, operator, e2e_namespace,
                                                                         table, ray_jobs, cluster, who, selector,
                                                                         scheduler_says):
    ns, (db, _) = e2e_namespace, table
    apply(control_plane, backfill_manifest(ns, db, cluster=cluster, startupDeadlineSeconds=30))
    uid = api.get("backfill", ns, NAME)["metadata"]["uid"]

    def unschedulable(o: Optional[dict]) -> bool:
        return conditions(o or {}).get("ClusterReady", {}).get("reason") == "Unschedulable"

    waiting = _wait_backfill(api, control_plane, operator, ns, lambda o: unschedulable(o) or _finished(o),
                             "ClusterReady reason Unschedulable", timeout=60)
    message = conditions(waiting)["ClusterReady"]["message"]
    assert phase(waiting) == "Provisioning", json.dumps(waiting["status"], indent=1)
    assert message.startswith(who) and f"is unschedulable (node selector {selector}): 0/" in message, message
    assert scheduler_says in message, message

    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run", timeout=90)
    st = done["status"]
    assert (st["phase"], st["reason"]) == ("Failed", "Unschedulable"), json.dumps(st, indent=1)
    assert st["message"].startswith("spec.startupDeadlineSeconds: not running after 30s: " + who)
    assert not ray_jobs.jobs_of(uid)  # nothing was submitted to a cluster that could not run it


# ---------------------------------------------------------------- mid-run


def _start_slow_run(control_plane, api, operator, ns, db, **spec) -> tuple[str, dict]:
    """Apply a backfill with the slow UDF and return (uid, status) once the first fragment is
    committed and reported in the status."""
    apply(control_plane, backfill_manifest(ns, db, **{**SLOW, **spec}))
    uid = api.get("backfill", ns, NAME)["metadata"]["uid"]
    running = _wait_backfill(api, control_plane, operator, ns,
                             lambda o: rows_done(o) > 0 or _finished(o), "the first committed progress", timeout=180)
    assert phase(running) == "Running" and 0 < rows_done(running) < ROWS, json.dumps(running["status"], indent=1)
    return uid, running["status"]


def test_a_second_backfill_of_the_same_column_waits_for_the_first(control_plane, api, operator, e2e_namespace, table,
                                                                  ray_jobs):
    ns, (db, captions) = e2e_namespace, table
    first_uid, _ = _start_slow_run(control_plane, api, operator, ns, db)
    apply(control_plane, backfill_manifest(ns, db, name="second", udf={"version": "2"}))
    second_uid = api.get("backfill", ns, "second")["metadata"]["uid"]

    waiting = _wait_backfill(api, control_plane, operator, ns, lambda o: (o or {}).get("status", {}).get("reason")
                             == "ColumnBusy", "reason ColumnBusy", name="second")
    assert phase(waiting) == "Pending" and f"GenevaBackfill {ns}/{NAME}" in waiting["status"]["message"]
    assert api.get("raycluster", ns, "second-ray") is None and not ray_jobs.jobs_of(second_uid)

    for name in (NAME, "second"):
        done = _wait_backfill(api, control_plane, operator, ns, _finished, f"{name} finished", timeout=240, name=name)
        assert phase(done) == "Succeeded", json.dumps(done["status"], indent=1)
    [first], [second] = ray_jobs.jobs_of(first_uid), ray_jobs.jobs_of(second_uid)
    assert second["start_time"] >= first["end_time"]  # one writer of the column at a time
    assert read_column(db, COLUMN) == expected_lengths(captions)


def test_delete_mid_run_stops_the_job_deletes_the_cluster_and_releases_the_finalizer(
        control_plane, api, operator, e2e_namespace, table, ray_jobs):
    ns, (db, _) = e2e_namespace, table
    uid, st = _start_slow_run(control_plane, api, operator, ns, db)
    assert api.get("raycluster", ns, CLUSTER) is not None

    control_plane.kubectl("delete", "genevabackfill", NAME, "-n", ns, "--wait=false")
    # The finalizer holds the object until the job is stopped and the cluster is gone.
    _wait_backfill(api, control_plane, operator, ns, lambda o: o is None, "the backfill deleted", timeout=90)
    assert api.get("raycluster", ns, CLUSTER) is None, "the finalizer went before the RayCluster"
    wait_until("the Ray pods gone", lambda: api.pods(ns, CLUSTER) == [], timeout=60, interval=0.5)
    job = _job_state(ray_jobs, st["jobId"], ("STOPPED",))
    assert [j["submission_id"] for j in ray_jobs.jobs_of(uid)] == [job["submission_id"]]
    # A stopped job commits nothing more: the table holds at most what was committed.
    assert len([v for v in read_column(db, COLUMN) if v is not None]) < ROWS


def test_operator_restart_mid_run_adopts_the_job_and_cluster(control_plane, api, operator, e2e_namespace, table,
                                                             ray_jobs):
    ns, (db, captions) = e2e_namespace, table
    uid, st = _start_slow_run(control_plane, api, operator, ns, db)
    rc_uid = api.get("raycluster", ns, CLUSTER)["metadata"]["uid"]

    operator.restart()  # SIGKILL (a crash), then a new process
    assert ray_jobs.job(st["jobId"])["status"] == "RUNNING", "the job ended before the operator was back"

    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run", timeout=240)
    assert phase(done) == "Succeeded", json.dumps(done["status"], indent=1)
    assert done["status"]["jobId"] == st["jobId"] and done["status"]["attempts"] == 1
    assert done["status"]["progress"]["percent"] == 100
    # No second job, no second cluster.
    assert [j["submission_id"] for j in ray_jobs.jobs_of(uid)] == [st["jobId"]]
    assert api.get("raycluster", ns, CLUSTER)["metadata"]["uid"] == rc_uid
    assert read_column(db, COLUMN) == expected_lengths(captions)
    events = _events(api, ns, {"JobSucceeded"})
    assert [e["reason"] for e in events].count("JobSubmitted") == 1, events


def test_suspend_stops_and_deletes_then_resume_finishes_exactly(control_plane, api, operator, e2e_namespace, table,
                                                                ray_jobs):
    ns, (db, captions) = e2e_namespace, table
    k = control_plane.kubectl
    uid, st = _start_slow_run(control_plane, api, operator, ns, db)
    first_job = st["jobId"]

    k("patch", "genevabackfill", NAME, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    suspended = _wait_backfill(api, control_plane, operator, ns,
                               lambda o: phase(o) == "Suspended"
                               and conditions(o).get("Suspended", {}).get("reason") == "Suspended",
                               "Suspended, settled", timeout=90)
    cond = conditions(suspended)
    assert cond["Suspended"]["status"] == "True" and cond["ClusterReady"]["reason"] == "Deleted"
    assert cond["Progressing"]["status"] == "False"
    assert api.get("raycluster", ns, CLUSTER) is None
    wait_until("the Ray pods gone", lambda: api.pods(ns, CLUSTER) == [], timeout=60, interval=0.5)
    _job_state(ray_jobs, first_job, ("STOPPED",))
    partial = read_column(db, COLUMN)
    assert 0 < len([v for v in partial if v is not None]) < ROWS

    k("patch", "genevabackfill", NAME, "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    done = _wait_backfill(api, control_plane, operator, ns, _finished, "a finished run after resuming", timeout=240)
    st = done["status"]
    assert st["phase"] == "Succeeded", json.dumps(st, indent=1)
    assert st["attempts"] == 1, "a suspension is not a failed attempt"
    assert st["progress"]["percent"] == 100 and st["jobId"] != first_job
    jobs = {j["submission_id"]: j["status"] for j in ray_jobs.jobs_of(uid)}
    assert jobs == {first_job: "STOPPED", st["jobId"]: "SUCCEEDED"}
    # The resumed job continued from the checkpoints: it computed only what was left.
    assert _job_result(ray_jobs, st["jobId"])["rowsComputed"] < ROWS
    assert read_column(db, COLUMN) == expected_lengths(captions)
    _events(api, ns, {"Suspended", "Resumed", "JobSucceeded"})
