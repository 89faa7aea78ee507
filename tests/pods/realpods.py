"""Pieces of the pods tier: the S3 server pods reach, the operator installed by Helm, a table on
S3, the README's example made to point at it, and what to print when something fails.

The operator is the chart's pod; the Ray head and workers are KubeRay's pods running the
project's ray-worker image; the job runs in the head pod; the table lives in the S3 server on
the node bridge's gateway. The test process only acts as a user would (kubectl, helm) and reads
the table and the API server to check the outcome.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.cluster.operator_fixtures import _merge, example_manifest  # noqa: E402
from tests.cluster.operator_fixtures import make_table as shared_make_table  # noqa: E402
from tests.controlplane.harness import ControlPlane, wait_until  # noqa: E402
from tests.packaging.helmtools import CHART, Helm, find_helm  # noqa: E402

RELEASE, RELEASE_NS = "geneva-operator", "geneva-system"
RAY_RUNNER = "geneva-ray-runner"
S3_SECRET = "s3-credentials"
TOKEN_SECRET = "ray-token"
BUCKET = "lake"
REGION = "us-east-1"
ROWS, FRAGMENTS = 12_000, 4

# Small enough that head + two workers + the operator fit the node's 2 CPUs (KubeRay gives a
# 500m pod `num-cpus 1`); memory as measured: head ~740 MiB, workers ~290 MiB plus the UDF.
HEAD = {"cpu": "500m", "memory": "2Gi"}
WORKER = {"name": "cpu", "type": "cpu", "cpu": "500m", "memory": "1536Mi"}


class S3Server:
    """moto's S3 in server mode, bound on the bridge's gateway: reachable from pods and the host only."""

    KEY_ID, SECRET = "geneva-test-key", "geneva-test-secret"  # moto accepts any

    def __init__(self, host: str):
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
        self.server.start()
        h, p = self.server.get_host_and_port()
        self.endpoint = f"http://{h}:{p}"
        self.client().create_bucket(Bucket=BUCKET)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=self.KEY_ID, aws_secret_access_key=self.SECRET)

    def credentials_env(self) -> dict[str, str]:
        """What the Ray pods get from the Secret through envFrom."""
        return {"AWS_ACCESS_KEY_ID": self.KEY_ID, "AWS_SECRET_ACCESS_KEY": self.SECRET, "AWS_REGION": REGION}

    def storage_options(self) -> dict[str, str]:
        """The table's storageOptions in the spec: where the store is, no credentials."""
        return {"aws_endpoint": self.endpoint, "allow_http": "true", "region": REGION}

    def host_options(self) -> dict[str, str]:
        return {**self.storage_options(), "aws_access_key_id": self.KEY_ID, "aws_secret_access_key": self.SECRET}

    def stop(self) -> None:
        self.server.stop()


# ---------------------------------------------------------------- the table


def make_table(s3: S3Server, uri: str, name: str = "captions", rows: int = ROWS,
               fragments: int = FRAGMENTS) -> list[Optional[str]]:
    """id, caption in `fragments` fragments on S3; returns the captions in id order (1 in 50 null)."""
    return shared_make_table(uri, name, rows, fragments, storage_options=s3.host_options())


def read_column(s3: S3Server, uri: str, column: str, name: str = "captions") -> list[Optional[int]]:
    import lance

    ds = lance.dataset(f"{uri}/{name}.lance", storage_options=s3.host_options())
    return ds.to_table(columns=["id", column]).sort_by("id").column(column).to_pylist()


def lengths(captions: list[Optional[str]]) -> list[Optional[int]]:
    return [None if c is None else len(c) for c in captions]


def readme_example(namespace: str, s3: S3Server, uri: str, **overrides: Any) -> dict:
    """examples/backfill.yaml as a user would adapt it here: their namespace, the table on the
    local S3 with the credentials Secret, no `image` (the operator's default), sizes that fit
    this node, and the cluster removed as soon as it succeeded."""
    m = copy.deepcopy(example_manifest())
    m["metadata"]["namespace"] = namespace
    spec = m["spec"]
    spec["table"].update(uri=uri, storageOptions=s3.storage_options())
    spec["cluster"].pop("image")
    spec["cluster"]["head"] = dict(HEAD)
    spec["cluster"]["workerGroups"] = [{**WORKER, "replicas": 2, "minReplicas": 0, "maxReplicas": 2}]
    spec["cluster"]["envFrom"] = [{"secretRef": {"name": S3_SECRET}}]
    spec["cleanup"] = {"policy": "OnSuccess", "ttlSecondsAfterFinished": 0}
    spec["startupDeadlineSeconds"] = 600  # Ray's first start on a busy 2-core node
    _merge(spec, overrides)
    return m


def put_ray_base_on_node(cluster: ControlPlane, work: Path) -> str:
    """The Ray base image the ray-worker image is built on (Ray 2.60 as rayproject/ray ships it:
    no geneva_operator, no lancedb), onto the node: a real image that lacks the engine."""
    from tests.imagebuild.build import RAY_BASE, Builder

    archive = work / "ray-base.tar"
    Builder(log=lambda _: None).buildah("push", "--quiet", RAY_BASE, f"oci-archive:{archive}:{RAY_BASE}")
    res = cluster.node.ctr("images", "import", str(archive))
    assert res.returncode == 0, res.stderr
    archive.unlink()
    return RAY_BASE


# ---------------------------------------------------------------- helm


class OperatorRelease:
    """The chart installed as a user would: `helm install`, the operator pod from its image."""

    def __init__(self, cluster: ControlPlane, state: Path):
        self.cluster = cluster
        self.helm = Helm(find_helm(), state)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.helm.run("--kubeconfig", str(self.cluster.kubeconfig), *args, check=check, timeout=600)

    def install_operator(self) -> None:
        self.run("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", check=False)
        self.run("install", RELEASE, str(CHART), "--namespace", RELEASE_NS, "--create-namespace",
                 # Faster looks than production's defaults, so the tier is short; nothing else set.
                 "--set-json", 'operator.env=[{"name":"GENEVA_POLL_INTERVAL_SECONDS","value":"1"},'
                               '{"name":"GENEVA_PROVISIONING_POLL_SECONDS","value":"2"}]',
                 "--wait", "--timeout", "300s")

    def uninstall_operator(self) -> None:
        self.run("uninstall", RELEASE, "--namespace", RELEASE_NS, "--wait", "--timeout", "120s", check=False)

    def operator_pod(self) -> dict:
        pods = self.cluster.kubectl_json("get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/name=geneva-operator")
        (pod,) = pods["items"]
        return pod

    def operator_logs(self, lines: int = 80) -> str:
        pod = self.operator_pod()["metadata"]["name"]
        return self.cluster.kubectl("logs", pod, "-n", RELEASE_NS, f"--tail={lines}", check=False).stdout


# ---------------------------------------------------------------- reading what happened


def pods_of(cluster: ControlPlane, namespace: str, ray_cluster: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"ray.io/cluster={ray_cluster}")["items"]


def head_pod(cluster: ControlPlane, namespace: str, ray_cluster: str) -> Optional[dict]:
    heads = [p for p in pods_of(cluster, namespace, ray_cluster)
             if p["metadata"]["labels"].get("ray.io/node-type") == "head" and not p["metadata"].get("deletionTimestamp")]
    return heads[0] if heads else None


def running(pod: dict) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def dashboard(pod: dict, path: str, token: Optional[str] = None) -> tuple[int, Any]:
    """GET the Ray dashboard of a head pod straight at its pod IP (on the node's bridge)."""
    req = urllib.request.Request(f"http://{pod['status']['podIP']}:8265{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def secret_value(cluster: ControlPlane, namespace: str, name: str, key: str) -> str:
    import base64

    data = cluster.kubectl_json("get", "secret", name, "-n", namespace)["data"]
    return base64.b64decode(data[key]).decode()


def diagnostics(cluster: ControlPlane, namespace: str, helm: Optional[OperatorRelease] = None) -> str:
    out = cluster.kubectl("get", "genevabackfills,rayclusters,pods,events", "-n", namespace, "-o", "wide",
                          check=False).stdout
    bf = cluster.kubectl("get", "genevabackfills", "-n", namespace, "-o", "yaml", check=False).stdout
    logs = ""
    for pod in cluster.kubectl_json("get", "pods", "-n", namespace).get("items", []):
        name = pod["metadata"]["name"]
        logs += f"\n--- logs of {name}\n" + cluster.kubectl(
            "logs", name, "-n", namespace, "--all-containers", "--tail=40", check=False).stdout
    op = f"\n--- operator\n{helm.operator_logs()}" if helm else ""
    return f"\n{out}\n{bf[-6000:]}{logs[-12000:]}{op}\n"


def wait_for(what: str, check, timeout: float, cluster: ControlPlane, namespace: str, helm: Optional[OperatorRelease] = None,
             interval: float = 1.0):
    return wait_until(what, check, timeout, interval=interval,
                      on_timeout=lambda: diagnostics(cluster, namespace, helm))
