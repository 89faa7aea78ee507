"""Fixtures of the operator tests: `local_ray`, a real local Ray 2.60 head with token auth
(see tests/localray.py, shared with the cluster tier)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.localray import LocalRay, free_port, local_ray  # noqa: E402,F401  (fixture by import)
