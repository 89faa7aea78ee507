"""Tier 4 on the tier-3 control plane: the chart installed with a real `helm install`, and the
real operator (`kopf run`, the args and env the chart rendered) running as the chart's own
ServiceAccount (a bearer token, no admin certificate), so the API server's RBAC authorizer
judges the chart's Roles. Containers never run on kwok nodes, so the operator runs here as a
process; its Ray dashboard URL points at a closed loopback port (no Ray is needed to prove RBAC).

Checked, per RBAC scope (cluster / namespaced):
- helm install --wait succeeds (CRDs from crds/, every object accepted by a real API server,
  the operator pod admitted by Pod Security Admission's "restricted" profile);
- the authorizer allows exactly what the operator needs and refuses the rest (kubectl auth can-i);
- the operator serves a GenevaBackfill: creates the RayCluster with an owner reference that
  blocks deletion (needs genevabackfills/finalizers), writes status, posts Events, then on
  delete removes its finalizer; and never hits a 403.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.controlplane.harness import ProcessExited, free_port, wait_until
from tests.packaging.helmtools import CHART, REPO

pytestmark = [pytest.mark.packaging, pytest.mark.cluster]


def backfill(name: str) -> dict:
    return {
        "apiVersion": "geneva.lancedb.com/v1alpha1",
        "kind": "GenevaBackfill",
        "metadata": {"name": name},
        "spec": {
            "table": {"uri": "/data/db", "name": "captions"},
            "column": "caption_len",
            "udf": {"function": "my_udfs.text:length", "inputColumns": ["caption"], "outputType": "int32"},
            "cluster": {"workerGroups": [{"name": "cpu", "replicas": 1, "maxReplicas": 1}]},
        },
    }


# (verb, resource, allowed) for the operator's ServiceAccount in the watched namespace
EXPECTED_IN_WATCHED = [
    ("watch", "genevabackfills.geneva.lancedb.com", True),
    ("patch", "genevabackfills.geneva.lancedb.com/status", True),
    ("update", "genevabackfills.geneva.lancedb.com/finalizers", True),
    ("watch", "rayclusters.ray.io", True),  # the operator's RayCluster index
    ("create", "rayclusters.ray.io", True),
    ("delete", "rayclusters.ray.io", True),
    ("update", "rayclusters.ray.io", False),
    ("create", "events", True),
    ("create", "events.events.k8s.io", True),
    ("get", "secrets", True),
    ("list", "secrets", False),
    ("watch", "secrets", False),
    ("watch", "pods", True),  # the operator's Ray pod index
    ("list", "pods", True),
    ("get", "pods", False),
    ("create", "genevabackfills.geneva.lancedb.com", False),
    ("delete", "genevabackfills.geneva.lancedb.com", False),
    ("create", "pods", False),
    ("create", "pods/exec", False),
    ("get", "configmaps", False),
    ("create", "rolebindings.rbac.authorization.k8s.io", False),
]


@pytest.mark.parametrize("scope", ["cluster", "namespaced"])
def test_install_and_run_under_chart_rbac(control_plane, helm_bin, tmp_path, scope, kuberay_version):
    suffix = uuid.uuid4().hex[:6]
    release, rel_ns, watched, other = f"gop-{suffix}", f"geneva-sys-{suffix}", f"gbf-{suffix}", f"other-{suffix}"
    kc = control_plane.kubectl
    for ns in (watched, other, rel_ns):
        kc("create", "namespace", ns)
    # Pod Security Admission, "restricted" profile, enforced by the real API server: the operator
    # pod must be admitted there (non-root, no privilege escalation, caps dropped, seccomp).
    kc("label", "namespace", rel_ns, "pod-security.kubernetes.io/enforce=restricted",
       "pod-security.kubernetes.io/enforce-version=latest")
    helm_env = {**os.environ, "HELM_CACHE_HOME": str(tmp_path / "hc"), "HELM_CONFIG_HOME": str(tmp_path / "hcfg"),
                "HELM_DATA_HOME": str(tmp_path / "hd")}
    helm_env.pop("KUBECONFIG", None)

    def helm(*args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([helm_bin, "--kubeconfig", str(control_plane.kubeconfig), *args],
                              capture_output=True, text=True, env=helm_env, timeout=300)
        assert proc.returncode == 0, f"helm {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        return proc

    operator = None
    try:
        helm("install", release, str(CHART), "--namespace", rel_ns,
             "--set", f"rbac.scope={scope}", "--set", f"watchNamespaces={{{watched}}}",
             "--wait", "--timeout", "180s")
        sa = release + "-geneva-operator"
        sts = control_plane.kubectl_json("get", "statefulset", sa, "-n", rel_ns)
        container = sts["spec"]["template"]["spec"]["containers"][0]

        # ---- what the real authorizer allows the chart's ServiceAccount
        who = f"system:serviceaccount:{rel_ns}:{sa}"
        for verb, resource, allowed in EXPECTED_IN_WATCHED:
            res = kc("auth", "can-i", verb, resource, "-n", watched, "--as", who, check=False)
            assert res.stdout.strip() == ("yes" if allowed else "no"), (scope, verb, resource, res.stdout)
        for verb, resource in [("watch", "genevabackfills.geneva.lancedb.com"), ("create", "rayclusters.ray.io"),
                               ("get", "secrets"), ("watch", "pods")]:
            res = kc("auth", "can-i", verb, resource, "-n", other, "--as", who, check=False)
            assert res.stdout.strip() == "no", (scope, "unwatched namespace", verb, resource)
        crds = kc("auth", "can-i", "watch", "customresourcedefinitions.apiextensions.k8s.io", "--as", who, check=False)
        assert crds.stdout.strip() == ("yes" if scope == "cluster" else "no")
        # the Ray runner's own Role grants nothing
        runner = f"system:serviceaccount:{watched}:geneva-ray-runner"
        for verb, resource in [("get", "pods"), ("get", "secrets"), ("get", "genevabackfills.geneva.lancedb.com")]:
            assert kc("auth", "can-i", verb, resource, "-n", watched, "--as", runner, check=False).stdout.strip() == "no"

        # ---- the operator, as that ServiceAccount, with the chart's command line and settings
        token = kc("create", "token", sa, "-n", rel_ns, "--duration", "1h").stdout.strip()
        kubeconfig = control_plane.token_kubeconfig(token, tmp_path / "operator.kubeconfig")
        health, metrics = free_port(), free_port()
        args = [a for a in container["args"] if not a.startswith("--liveness=")]
        args.append(f"--liveness=http://127.0.0.1:{health}/healthz")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        for e in container.get("env", []):
            if "value" in e:
                env[e["name"]] = e["value"]
        env.update({"GENEVA_METRICS_PORT": str(metrics), "POD_ID": f"{sa}-0",
                    # loopback, closed: no Ray here, and never a pod or Service address
                    "GENEVA_DASHBOARD_URL_TEMPLATE": "http://127.0.0.1:9/{namespace}/{cluster}"})
        log_path = tmp_path / "operator.log"
        log = open(log_path, "w")
        kopf = Path(sys.executable).parent / "kopf"
        operator = subprocess.Popen([str(kopf), *container["command"][1:], *args], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)

        def healthy():
            import urllib.request
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                if operator.poll() is not None:
                    raise ProcessExited(f"operator exited {operator.returncode}:{tail()}")
                return False

        def tail() -> str:
            return "\noperator log:\n" + log_path.read_text(errors="replace")[-6000:]
        wait_until("operator healthy", healthy, timeout=60, on_timeout=tail)

        name = "embed-" + suffix
        control_plane.apply(backfill(name), "-n", watched)

        def ray_cluster():
            res = kc("get", "rayclusters.ray.io", "-n", watched, "-o", "json")
            items = json.loads(res.stdout)["items"]
            return items[0] if items else None
        rc = wait_until("RayCluster created by the operator", ray_cluster, timeout=90, on_timeout=tail)
        (owner,) = rc["metadata"]["ownerReferences"]
        assert owner["kind"] == "GenevaBackfill" and owner["name"] == name
        assert owner.get("blockOwnerDeletion") is True  # allowed only with genevabackfills/finalizers

        def status_phase():
            obj = control_plane.kubectl_json("get", "genevabackfill", name, "-n", watched)
            return obj.get("status", {}).get("phase")
        assert wait_until("status written", status_phase, timeout=60, on_timeout=tail) in (
            "Pending", "Provisioning", "Running", "Failed")

        def events():
            ev = control_plane.kubectl_json("get", "events", "-n", watched,
                                            "--field-selector", f"involvedObject.name={name}")
            return ev["items"]
        wait_until("an Event posted by the operator", events, timeout=60, on_timeout=tail)

        kc("delete", "genevabackfill", name, "-n", watched, "--wait=false")

        def gone():
            return kc("get", "genevabackfill", name, "-n", watched, "--ignore-not-found", "-o", "name").stdout.strip() == ""
        wait_until("finalizer removed, backfill deleted", gone, timeout=90, on_timeout=tail)

        # No request of the operator was refused, except, in namespaced mode, the KubeRay CRD
        # read (the operator then assumes the oldest KubeRay): refusing it is the point of that
        # mode. kopf's cluster-wide discovery (list namespaces, watch CRDs) is not even tried
        # there: refused, kopf retried it for 54 s before serving anything.
        expected = ("KubeRay unknown (403 Forbidden: get customresourcedefinitions/rayclusters.ray.io)",)
        log = log_path.read_text()
        refused = [line for line in log.splitlines() if "forbidden" in line.lower()]  # every 403 Status says Forbidden
        if scope == "namespaced":
            refused = [line for line in refused if not any(e in line for e in expected)]
            assert "installed KubeRay: KubeRay unknown (403 Forbidden" in log
            assert f"namespaced: serving {watched}; no cluster-wide discovery" in log
        elif kuberay_version:  # the chart's get on customresourcedefinitions/rayclusters.ray.io
            assert f"installed KubeRay: KubeRay >= {kuberay_version.lstrip('v').rsplit('.', 1)[0]} (RayCluster CRD)" in log
        assert not refused, "\n".join(refused[:5])
    finally:
        if operator is not None and operator.poll() is None:
            os.killpg(operator.pid, signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(operator.pid, signal.SIGKILL)
        subprocess.run([helm_bin, "--kubeconfig", str(control_plane.kubeconfig), "uninstall", release,
                        "--namespace", rel_ns, "--wait", "--timeout", "120s"],
                       capture_output=True, text=True, env=helm_env)
        for ns in (watched, other, rel_ns):
            kc("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
