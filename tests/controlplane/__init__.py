"""Tier-3 test infrastructure: a real local Kubernetes control plane.

See README.md in this directory. Entry points:
``python -m tests.controlplane build|up|down|status`` and
:class:`tests.controlplane.harness.ControlPlane`.
"""

from .harness import Binaries, Cluster, ControlPlane, KubectlError, build, ensure_built, read_versions

__all__ = ["Binaries", "Cluster", "ControlPlane", "KubectlError", "build", "ensure_built", "read_versions"]
