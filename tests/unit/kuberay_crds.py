"""KubeRay's own RayCluster CRDs, one per version of the compatibility matrix
(tests/controlplane/versions.env KUBERAY_VERSIONS), read from the published Go module
(`go mod download`, the module cache the cluster tier's builds fill)."""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
MODULE = "github.com/ray-project/kuberay/ray-operator"
CRD_IN_MODULE = "config/crd/bases/ray.io_rayclusters.yaml"


def kuberay_versions() -> list[str]:
    """KUBERAY_VERSIONS, oldest first."""
    for line in (REPO / "tests/controlplane/versions.env").read_text().splitlines():
        if line.startswith("KUBERAY_VERSIONS="):
            return [v.strip() for v in line.split("=", 1)[1].split(",") if v.strip()]
    raise AssertionError("KUBERAY_VERSIONS missing from tests/controlplane/versions.env")


def crd_file(version: str) -> Path:
    go = shutil.which("go")
    assert go, "the Go toolchain is needed to fetch KubeRay's CRD (go mod download)"
    module = f"{MODULE}@{version}"
    cache = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True).stdout.strip()
    path = Path(cache) / module / CRD_IN_MODULE
    if not path.is_file():
        done = subprocess.run([go, "mod", "download", "-json", module], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        path = Path(json.loads(done.stdout)["Dir"]) / CRD_IN_MODULE
    return path


@functools.cache
def crd(version: str) -> dict[str, Any]:
    """The CRD as the API server returns it (a dict). Read-only: shared between tests."""
    # 900 kB of YAML: the C loader takes seconds where the pure-Python one takes a minute.
    return yaml.load(crd_file(version).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def v1_schema(version: str) -> dict[str, Any]:
    [served] = [v for v in crd(version)["spec"]["versions"] if v["name"] == "v1"]
    return served["schema"]["openAPIV3Schema"]
