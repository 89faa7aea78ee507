"""The tier-3 control plane works as a user of kubectl would see it.

A RayCluster applied with kubectl is reconciled by the real KubeRay operator,
its pods are bound by the real scheduler to the kwok node carrying the
matching geneva label, kwok reports them Running/Ready, and deleting the
RayCluster garbage-collects them (kube-controller-manager's GC). Service
account tokens are issued and RBAC is enforced.
"""

from __future__ import annotations

import json

import pytest

from tests.controlplane.harness import CPU_LABEL, GPU_LABEL, HEAD_LABEL, KubectlError, wait_until

RAY_IMAGE = "rayproject/ray:2.46.0"  # never pulled: kwok fakes the containers


def raycluster(name: str) -> dict:
    def pod_template(container: str, node_label: str, limits: dict) -> dict:
        return {
            "spec": {
                "nodeSelector": {node_label: "true"},
                "containers": [{
                    "name": container,
                    "image": RAY_IMAGE,
                    "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                  "limits": {"cpu": "1", "memory": "1Gi", **limits}},
                }],
            }
        }

    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.46.0",
            "headGroupSpec": {
                "rayStartParams": {},
                "template": pod_template("ray-head", HEAD_LABEL, {}),
            },
            "workerGroupSpecs": [
                {"groupName": "cpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 2,
                 "rayStartParams": {}, "template": pod_template("ray-worker", CPU_LABEL, {})},
                {"groupName": "gpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 2,
                 "rayStartParams": {},
                 "template": pod_template("ray-worker", GPU_LABEL, {"nvidia.com/gpu": "1"})},
            ],
        },
    }


def _pods(kubectl, ns: str, cluster: str) -> list[dict]:
    out = kubectl("get", "pods", "-n", ns, "-l", f"ray.io/cluster={cluster}", "-o", "json").stdout
    return json.loads(out)["items"]


def _ready(pod: dict) -> bool:
    conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
    return pod.get("status", {}).get("phase") == "Running" and conds.get("Ready") == "True"


def test_nodes_carry_geneva_labels(kubectl):
    nodes = json.loads(kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_name = {n["metadata"]["name"]: n for n in nodes}
    assert by_name["ray-head-0"]["metadata"]["labels"][HEAD_LABEL] == "true"
    assert by_name["ray-cpu-0"]["metadata"]["labels"][CPU_LABEL] == "true"
    assert by_name["ray-gpu-0"]["metadata"]["labels"][GPU_LABEL] == "true"
    assert by_name["ray-gpu-0"]["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    for n in by_name.values():
        ready = {c["type"]: c["status"] for c in n["status"]["conditions"]}["Ready"]
        assert ready == "True", n["metadata"]["name"]


def test_raycluster_pods_scheduled_running_and_garbage_collected(kubectl, namespace):
    name = "rc"
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(raycluster(name)))

    # KubeRay creates 1 head + 1 cpu + 1 gpu worker; kwok makes them Running/Ready.
    pods = wait_until(
        "3 Running+Ready RayCluster pods",
        lambda: (lambda ps: ps if len(ps) == 3 and all(map(_ready, ps)) else None)(
            _pods(kubectl, namespace, name)),
        timeout=120, interval=0.5,
        on_timeout=lambda: "\n" + kubectl("get", "pods,events", "-n", namespace, "-o", "wide",
                                          check=False).stdout,
    )

    placement = {}
    for pod in pods:
        labels = pod["metadata"]["labels"]
        group = "head" if labels["ray.io/node-type"] == "head" else labels["ray.io/group"]
        placement[group] = pod["spec"]["nodeName"]
        owners = pod["metadata"].get("ownerReferences", [])
        assert [(o["kind"], o["name"]) for o in owners] == [("RayCluster", name)], owners
    assert placement == {"head": "ray-head-0", "cpu": "ray-cpu-0", "gpu": "ray-gpu-0"}

    gpu_pod = next(p for p in pods if p["metadata"]["labels"].get("ray.io/group") == "gpu")
    assert gpu_pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    # KubeRay marks the cluster ready once all its pods are Running and Ready.
    wait_until(
        "RayCluster status.state == ready",
        lambda: kubectl("get", "raycluster", name, "-n", namespace,
                        "-o", "jsonpath={.status.state}").stdout == "ready",
        timeout=60, interval=0.5,
        on_timeout=lambda: "\n" + kubectl("get", "raycluster", name, "-n", namespace, "-o", "yaml",
                                          check=False).stdout,
    )

    def services():
        return json.loads(kubectl("get", "services", "-n", namespace, "-l", f"ray.io/cluster={name}",
                                  "-o", "json").stdout)["items"]

    assert [s["metadata"]["name"] for s in services()] == [f"{name}-head-svc"]

    # Deleting the RayCluster: the garbage collector removes the owned objects.
    kubectl("delete", "raycluster", name, "-n", namespace, "--timeout=60s")
    wait_until("RayCluster pods garbage collected",
               lambda: _pods(kubectl, namespace, name) == [], timeout=90, interval=0.5)
    wait_until("RayCluster services garbage collected", lambda: services() == [], timeout=60, interval=0.5)


def test_service_account_token_and_rbac(control_plane, kubectl, namespace, tmp_path):
    kubectl("create", "serviceaccount", "reader", "-n", namespace)
    kubectl("create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", namespace)
    kubectl("create", "rolebinding", "reader", "--role=pod-reader",
            f"--serviceaccount={namespace}:reader", "-n", namespace)
    token = kubectl("create", "token", "reader", "-n", namespace, "--duration=10m").stdout.strip()
    as_sa = control_plane.token_kubeconfig(token, tmp_path / "reader.kubeconfig")

    def sa_kubectl(*args, check=True):
        return kubectl(*args, kubeconfig=as_sa, check=check)

    who = json.loads(sa_kubectl("auth", "whoami", "-o", "json").stdout)
    assert who["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:reader"

    assert sa_kubectl("auth", "can-i", "list", "pods", "-n", namespace).stdout.strip() == "yes"
    denied = sa_kubectl("auth", "can-i", "list", "secrets", "-n", namespace, check=False)
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")
    assert sa_kubectl("auth", "can-i", "list", "pods", "-n", "default", check=False).stdout.strip() == "no"

    sa_kubectl("get", "pods", "-n", namespace)  # granted: succeeds
    with pytest.raises(KubectlError, match="(?i)forbidden"):
        sa_kubectl("get", "secrets", "-n", namespace)

    bogus = control_plane.token_kubeconfig(token[:-4] + "AAAA", tmp_path / "bogus.kubeconfig")
    with pytest.raises(KubectlError, match="(?i)unauthorized|must be logged in"):
        kubectl("get", "pods", "-n", namespace, kubeconfig=bogus)
