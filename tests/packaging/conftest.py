"""Fixtures of the packaging tests: `helm_bin` (a real helm, found or built, never skipped) and
`helm` (a Helm runner with private state). See helmtools.py for how helm is found."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.packaging.helmtools import Helm, find_helm  # noqa: E402


@pytest.fixture(scope="session")
def helm_bin() -> str:
    path = find_helm()
    out = subprocess.run([path, "version", "--short"], capture_output=True, text=True)
    assert out.returncode == 0, f"{path} version failed: {out.stderr}"
    assert out.stdout.startswith("v3."), out.stdout
    return path


@pytest.fixture(scope="session")
def helm(helm_bin, tmp_path_factory) -> Helm:
    return Helm(helm_bin, tmp_path_factory.mktemp("helm-state"))


