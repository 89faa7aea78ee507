"""Fixtures shared by the tiers that need a real control plane (tests/cluster, tests/packaging).

* ``control_plane`` (session, one per KubeRay version): reuses a running cluster when
  ``GENEVA_KUBECONFIG`` names its admin kubeconfig, or when the state dir of ``python -m
  tests.controlplane up`` ($GENEVA_CLUSTER_STATE, default ~/.cache/geneva-operator/cluster) holds
  a healthy one of that KubeRay; otherwise builds the binaries if needed (never skips) and starts
  a private one, stopped before the next version's starts.
* The KubeRay matrix (``kuberay_version``, parametrized here): tests marked ``kuberay_matrix``
  run against every version of versions.env KUBERAY_VERSIONS, the rest of the cluster tier
  against the oldest and the newest, every other tier against the newest. ``--kuberay V[,V]``
  runs everything against those versions instead; a ``GENEVA_KUBECONFIG`` cluster is one
  KubeRay, whichever it is (the version is then None).
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

from tests.sigterm import pytest_sessionstart  # noqa: E402,F401 - a SIGTERM tears down like Ctrl-C
from tests.controlplane.harness import (  # noqa: E402
    Cluster,
    ControlPlane,
    default_state_dir,
    kuberay_versions,
)

CLUSTER_TIER = REPO / "tests" / "cluster"


def pytest_addoption(parser):
    parser.addoption("--kuberay", default=None, metavar="V[,V...]",
                     help="KubeRay versions (of versions.env KUBERAY_VERSIONS) every control-plane test runs against; "
                          "default: the matrix (kuberay_matrix tests: all; the cluster tier: oldest and newest; "
                          "other tiers: newest)")


def pytest_configure(config):
    config.addinivalue_line("markers", "kuberay_matrix: runs against every KubeRay of versions.env KUBERAY_VERSIONS")


def _matrix_for(config, item_path: Path, matrix: bool) -> list:
    if os.environ.get("GENEVA_KUBECONFIG"):
        return [None]
    known = kuberay_versions()
    chosen = config.getoption("--kuberay")
    if chosen:
        versions = [v.strip() for v in chosen.split(",") if v.strip()]
        unknown = [v for v in versions if v not in known]
        if unknown:
            raise pytest.UsageError(f"--kuberay {','.join(unknown)}: not in KUBERAY_VERSIONS {','.join(known)}")
        return versions
    if matrix:
        return known
    if CLUSTER_TIER in item_path.resolve().parents:
        return sorted({known[0], known[-1]}, key=known.index)
    return [known[-1]]


def pytest_generate_tests(metafunc):
    if "control_plane" not in metafunc.fixturenames:
        return
    matrix = metafunc.definition.get_closest_marker("kuberay_matrix") is not None
    versions = _matrix_for(metafunc.config, Path(metafunc.definition.path), matrix)
    # Session scope: pytest runs the tests of one version together, so each control plane
    # starts once and is stopped before the next one starts.
    metafunc.parametrize("kuberay_version", versions, scope="session",
                         ids=[v or "external" for v in versions])


@pytest.fixture(scope="session")
def kuberay_version() -> str:
    """What a control plane's KubeRay is where no test parametrizes it: the newest."""
    return kuberay_versions()[-1]


@pytest.fixture(scope="session")
def control_plane(request, tmp_path_factory, kuberay_version):
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
        same_kuberay = (running.kuberay_version or kuberay_versions()[-1]) == kuberay_version
        if not running.real_node and same_kuberay and running.running() and running.healthy():
            yield running
            return
    except (FileNotFoundError, ValueError, KeyError):
        pass

    state = tmp_path_factory.mktemp(f"control-plane-kuberay-{kuberay_version}", numbered=True) / "state"
    yield from run_control_plane(request, ControlPlane(state, kuberay_version=kuberay_version))


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
