"""Fixtures of the packaging tests (chart, manifests, Argo CD health check, Dockerfile).

Helm is a real binary, found in this order:
  1. $HELM
  2. `helm` on PATH
  3. ${GENEVA_CACHE:-~/.cache/geneva-operator}/bin/helm-<HELM_VERSION from versions.env>/helm,
     then any other helm-*/helm there
  4. built by `tests/controlplane/build.sh helm` (Go module proxy), then 3. again.
Never skipped: a missing helm is a failure, because these tests are the chart's only check.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "geneva-operator"
BUILD_SH = REPO / "tests" / "controlplane" / "build.sh"
VERSIONS_ENV = REPO / "tests" / "controlplane" / "versions.env"

RELEASE = "geneva-operator"
NAMESPACE = "geneva-system"


def _pinned(key: str) -> str | None:
    if not VERSIONS_ENV.exists():
        return None
    for line in VERSIONS_ENV.read_text().splitlines():
        if line.startswith(f"{key}="):
            return line.split("=", 1)[1].strip()
    return None


# The Kubernetes version charts are rendered for. Passed explicitly: a helm built with plain
# `go install` (no release ldflags) would otherwise assume v1.20, below the chart's kubeVersion.
KUBE_VERSION = _pinned("KUBERNETES_VERSION") or "v1.34.0"


def _cached_helm() -> str | None:
    bindir = Path(os.environ.get("GENEVA_CACHE", Path.home() / ".cache" / "geneva-operator")) / "bin"
    pinned = _pinned("HELM_VERSION")
    if pinned and (bindir / f"helm-{pinned}" / "helm").is_file():
        return str(bindir / f"helm-{pinned}" / "helm")
    found = sorted(glob.glob(str(bindir / "helm-*" / "helm")) + glob.glob(str(bindir / "helm")))
    return found[-1] if found else None


def find_helm() -> str:
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = _cached_helm()
    if cached:
        return cached
    if BUILD_SH.exists():
        subprocess.run(["bash", str(BUILD_SH), "helm"], check=True)
        cached = _cached_helm()
        if cached:
            return cached
    pytest.fail("no helm binary: set $HELM, put helm on PATH, or run tests/controlplane/build.sh helm")


class HelmError(Exception):
    def __init__(self, cmd, proc):
        super().__init__(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
        self.stderr = proc.stderr


class Helm:
    """Runs helm with a private HOME-like state, so no user config or repo cache leaks in."""

    def __init__(self, binary: str, state: Path):
        self.binary = binary
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(state / "cache"),
            "HELM_CONFIG_HOME": str(state / "config"),
            "HELM_DATA_HOME": str(state / "data"),
        }
        # `helm template` must never need a cluster: point it at nothing.
        self.env.pop("KUBECONFIG", None)

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self.binary, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise HelmError(cmd, proc)
        return proc

    def template_text(self, *set_args: str, values: dict | None = None, tmp: Path | None = None,
                      namespace: str = NAMESPACE, include_crds: bool = False) -> str:
        args = ["template", RELEASE, str(CHART), "--namespace", namespace, "--kube-version", KUBE_VERSION]
        if include_crds:
            args.append("--include-crds")
        if values is not None:
            assert tmp is not None
            fd, name = tempfile.mkstemp(suffix=".yaml", dir=tmp)
            with os.fdopen(fd, "w") as f:
                yaml.safe_dump(values, f)
            args += ["--values", name]
        for s in set_args:
            args += ["--set", s]
        return self.run(*args).stdout

    def template(self, *set_args: str, **kw) -> list[dict]:
        return [d for d in yaml.safe_load_all(self.template_text(*set_args, **kw)) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [d for d in by_kind(docs, kind)
             if (name is None or d["metadata"]["name"] == name)
             and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name or ''} {namespace or ''}, got {len(found)}"
    return found[0]
