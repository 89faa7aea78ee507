"""Tier 5, pods: the whole user path on one real node, with nothing standing in.

* ``pods_cluster`` (session): the control plane with a real node (containerd, kubelet,
  kube-proxy, CoreDNS; tests/controlplane/node.py), the project's images built from the
  Dockerfile (tests/imagebuild) and imported into the node. Reuses `make cluster-up`'s cluster
  when it has a real node; otherwise starts one (root only: it runs a kubelet).
* ``s3`` (session): an S3 server (moto) on the node bridge's gateway address, where pods reach it.
* ``operator_release`` (session): the chart installed by `helm install`: the operator runs as a
  pod from its image, under the chart's RBAC.
* ``user_namespace``: what a user prepares before applying a backfill: the namespace, the Ray
  runner ServiceAccount, the S3 credentials Secret and the Ray token Secret.

Every test here carries the marker ``pods`` (``pytest -m pods`` runs exactly this tier).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.controlplane import hostnet  # noqa: E402
from tests.conftest import run_control_plane  # noqa: E402
from tests.controlplane.harness import ControlPlane, default_state_dir  # noqa: E402
from tests.controlplane.node import node_running  # noqa: E402

from realpods import (  # noqa: E402
    RAY_RUNNER,
    S3_SECRET,
    TOKEN_SECRET,
    OperatorRelease,
    S3Server,
    diagnostics,
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.pods)


@pytest.fixture(scope="session")
def pods_cluster(request, tmp_path_factory) -> Iterator[ControlPlane]:
    if os.geteuid() != 0:
        pytest.fail("the pods tier runs a real kubelet, containerd and iptables rules: it needs root")
    from tests.imagebuild import build_all, import_all

    build_all()  # layer-cached: seconds when nothing changed
    try:
        running = ControlPlane.attach(default_state_dir())
        if running.real_node and running.running() and running.healthy():
            import_all(str(running.node.containerd_socket))
            yield running
            return
    except (FileNotFoundError, ValueError, KeyError):
        pass
    # Ray's first start on a busy 2-core machine is slow: generous start timeouts.
    cp = ControlPlane(tmp_path_factory.mktemp("pods-plane", numbered=True) / "state", real_node=True,
                      start_timeout=300)
    planted = _plant_leftovers()
    for started in run_control_plane(request, cp):
        # A run killed without its teardown (CI kills every process first) left these: the start removed them.
        cleaned = (cp.logs / "host-clean.log").read_text()
        for trace in planted:
            assert trace in cleaned, f"{trace!r} was not cleaned before the node started: {cleaned}"
        yield started
    # What `make cluster-down` promises: nothing of the node is left on the host.
    left = hostnet.traces()
    assert not left, f"the node left traces on the host: {left}"


def _plant_leftovers() -> list[str]:
    """What a killed node leaves behind, as far as it can be made without a node: the bridge,
    a KUBE-* chain, the blackhole route, a pod cgroup. Returns the lines host-clean.log must show."""
    owner = hostnet.OWNER_FILE
    if owner.exists() and node_running(Path(owner.read_text().strip())):
        return []  # another cluster's node is up: the start refuses, saying whose, before touching it
    hostnet.clean_host()  # the real leftovers of an earlier run, if any, so that ours can be planted
    subprocess.run(["ip", "link", "add", hostnet.BRIDGE, "type", "bridge"], check=True)
    subprocess.run(["ip", "route", "add", "blackhole", hostnet.POD_RANGE], check=True)
    subprocess.run(["iptables", "-t", "nat", "-N", "KUBE-LEFTOVER"], check=True)
    (hostnet.CGROUPS / "pids" / hostnet.CGROUP_ROOT / "kubepods-leftover").mkdir(parents=True)
    return [f"bridge {hostnet.BRIDGE}", f"route blackhole {hostnet.POD_RANGE}", "iptables: 1 rules/chains", "cgroups"]


@pytest.fixture(scope="session")
def s3(pods_cluster) -> Iterator[S3Server]:
    server = S3Server(hostnet.GATEWAY)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def operator_release(pods_cluster, tmp_path_factory) -> Iterator[OperatorRelease]:
    helm = OperatorRelease(pods_cluster, tmp_path_factory.mktemp("helm"))
    helm.install_operator()
    yield helm
    helm.uninstall_operator()


@pytest.fixture
def user_namespace(pods_cluster, operator_release, s3, request) -> Iterator[str]:
    name = f"pods-{request.node.name[5:28].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:4]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    k = pods_cluster.kubectl
    k("create", "namespace", name)
    k("wait", "--for=create", "--timeout=60s", "serviceaccount/default", "-n", name)
    k("create", "serviceaccount", RAY_RUNNER, "-n", name)
    # What the Ray pods get through envFrom: the table's credentials, never in the spec.
    k("create", "secret", "generic", S3_SECRET, "-n", name,
      *[f"--from-literal={key}={value}" for key, value in s3.credentials_env().items()])
    k("create", "secret", "generic", TOKEN_SECRET, "-n", name, f"--from-literal=token={uuid.uuid4().hex}")
    yield name
    if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
        sys.stderr.write(diagnostics(pods_cluster, name, operator_release))
    k("delete", "genevabackfills", "--all", "-n", name, "--timeout=120s", check=False)
    k("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
