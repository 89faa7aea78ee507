"""Tier-3 tests: a real control plane (fixtures in tests/conftest.py). Every test in this
directory is marked ``cluster``."""

from __future__ import annotations

from pathlib import Path

import pytest

# The end-to-end fixtures (operator_fixtures.py), for every module of the tier.
from operator_fixtures import api, crd, e2e_namespace, local_ray, ns_prefix, operator, ray_jobs, table  # noqa: F401

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.cluster)
