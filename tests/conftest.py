"""Fixtures shared by the tiers that need a real control plane (tests/cluster, tests/packaging).

* ``control_plane`` (session): reuses a running cluster when ``GENEVA_KUBECONFIG`` names its
  admin kubeconfig, or when the state dir of ``python -m tests.controlplane up``
  ($GENEVA_CLUSTER_STATE, default ~/.cache/geneva-operator/cluster) holds a healthy one;
  otherwise builds the binaries if needed (never skips) and starts a private one, stopped at
  the end. One per pytest session, whichever tier asks first.
* ``namespace`` (function): a fresh namespace per test, deleted afterwards.
* ``kubectl`` (function): ``kubectl(*args, input=None, check=True)`` against the cluster,
  returns CompletedProcess, raises KubectlError with stderr.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.controlplane.harness import (  # noqa: E402
    Cluster,
    ControlPlane,
    default_state_dir,
)


@pytest.fixture(scope="session")
def control_plane(request, tmp_path_factory):
    kubeconfig = os.environ.get("GENEVA_KUBECONFIG")
    if kubeconfig:
        cluster = Cluster(Path(kubeconfig))
        if not cluster.healthy(timeout=10):
            pytest.fail(f"GENEVA_KUBECONFIG={kubeconfig} does not reach a ready apiserver")
        yield cluster
        return

    try:
        running = ControlPlane.attach(default_state_dir())
        # Not `make cluster-up`'s real node: these tiers assume kwok nodes (pods that run nothing).
        if not running.real_node and running.running() and running.healthy():
            yield running
            return
    except (FileNotFoundError, ValueError, KeyError):
        pass

    yield from run_control_plane(request, ControlPlane(tmp_path_factory.mktemp("control-plane", numbered=True) / "state"))


def run_control_plane(request, cp: ControlPlane):
    """Start `cp` (building the binaries first if they are missing), yield it, stop it; keep its
    logs (under pytest's basetemp) when the session had failures."""
    cp.start()
    try:
        yield cp
    finally:
        failed = request.session.testsfailed > 0
        cp.stop(remove_state=not failed)
        if failed:
            sys.stderr.write(f"\ncontrol plane logs kept in {cp.logs}\n")


@pytest.fixture
def kubectl(control_plane):
    return control_plane.kubectl


@pytest.fixture
def namespace(control_plane, request):
    name = f"t-{request.node.name[:30].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:6]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    control_plane.kubectl("create", "namespace", name)
    # pods need the namespace's 'default' service account (serviceaccount controller)
    control_plane.kubectl("wait", "--for=create", "--timeout=60s", "serviceaccount/default", "-n", name)
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)
