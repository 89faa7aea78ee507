"""The real node itself, before any Ray: what the pods of a backfill rely on.

A pod from an image imported into the node's containerd runs; it reaches another pod through
a ClusterIP Service by its DNS name (kube-proxy, CoreDNS) and the API server through the
`kubernetes` Service; it has no route anywhere else; `kubectl logs` and `exec` work through
the kubelet; and the host gained no route through its uplink.
"""

from __future__ import annotations

import json
import uuid

from tests.controlplane import hostnet
from tests.controlplane.node import NODE_NAME

from realpods import running, wait_for

# The operator image has Python and nothing else we need: a small image that is always built.
IMAGE = "ghcr.io/lancedb/geneva-operator:0.1.0"

SERVER = "import http.server as h; h.HTTPServer(('', 8080), h.SimpleHTTPRequestHandler).serve_forever()"
PROBE = r"""
import json, socket, ssl, urllib.request
out = {}
out["service"] = urllib.request.urlopen("http://echo:80/", timeout=10).status
out["resolved"] = socket.gethostbyname("echo")
ctx = ssl.create_default_context(cafile="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
req = urllib.request.Request("https://kubernetes.default.svc/version", headers={"Authorization": "Bearer " + token})
out["apiserver"] = json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"]
try:  # the uplink's gateway: a pod has no route to it (nothing is sent)
    socket.create_connection(("192.0.2.1", 53), timeout=3)
    out["outside"] = "connected"
except OSError as e:
    out["outside"] = e.strerror
print("PROBE " + json.dumps(out), flush=True)
"""


def _pod(name: str, command: list[str], labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": True,
                     "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "Never",
                                     "command": command, "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]}}


def test_a_pod_reaches_services_by_name_the_api_server_and_nothing_else(pods_cluster):
    k = pods_cluster
    ns = f"node-{uuid.uuid4().hex[:6]}"
    routes_before = hostnet.uplink_routes()
    k.kubectl("create", "namespace", ns)
    try:
        k.kubectl("wait", "--for=create", "--timeout=60s", "serviceaccount/default", "-n", ns)
        k.apply(_pod("echo", ["python", "-c", SERVER], {"app": "echo"}), "-n", ns)
        k.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo"},
                 "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]}}, "-n", ns)
        echo = wait_for("the echo pod running", lambda: (lambda p: p if running(p) else None)(
            k.kubectl_json("get", "pod", "echo", "-n", ns)), 120, k, ns)
        assert echo["spec"]["nodeName"] == NODE_NAME and echo["status"]["podIP"].startswith("198.18.0.")
        # exec goes API server -> kubelet -> containerd's stream server
        assert k.kubectl("exec", "echo", "-n", ns, "--", "python", "-c", "print(6 * 7)").stdout.strip() == "42"

        k.apply(_pod("probe", ["python", "-c", PROBE]), "-n", ns)
        wait_for("the probe done", lambda: k.kubectl_json("get", "pod", "probe", "-n", ns)["status"].get("phase")
                 in ("Succeeded", "Failed"), 120, k, ns)
        logs = k.kubectl("logs", "probe", "-n", ns).stdout
        line = next((ln for ln in logs.splitlines() if ln.startswith("PROBE ")), None)
        assert line, logs
        out = json.loads(line.split(" ", 1)[1])
        svc_ip = k.kubectl_json("get", "service", "echo", "-n", ns)["spec"]["clusterIP"]
        assert out["service"] == 200 and out["resolved"] == svc_ip and svc_ip.startswith("198.19.")
        assert out["apiserver"].startswith("v1.")
        assert out["outside"] == "Network is unreachable", out
    finally:
        k.kubectl("delete", "namespace", ns, "--wait=false", check=False)
    assert hostnet.uplink_routes() == routes_before
