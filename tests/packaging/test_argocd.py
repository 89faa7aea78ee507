"""The Argo CD health check (argocd/health.lua) run by a real Lua interpreter against sample
GenevaBackfill objects, plus the consistency of the Argo CD example files.

Lua comes from lupa (PyPI), which embeds the real Lua C implementations. Argo CD evaluates health
scripts with gopher-lua, a Lua 5.1 implementation, so the script is run under Lua 5.1 (what
Argo CD speaks) and 5.4 (to catch reliance on 5.1-only behaviour either way)."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.packaging.helmtools import REPO

pytestmark = pytest.mark.packaging

# A hard import: a missing lupa is an error, never a skip (pip install lupa).
from lupa import lua51, lua54  # noqa: E402

HEALTH_LUA = (REPO / "argocd" / "health.lua").read_text()
HEALTH_KEY = "resource.customizations.health.geneva.lancedb.com_GenevaBackfill"


def backfill(status=None, generation=3, **status_fields):
    obj = {
        "apiVersion": "geneva.lancedb.com/v1alpha1",
        "kind": "GenevaBackfill",
        "metadata": {"name": "embed-captions", "namespace": "geneva", "generation": generation},
        "spec": {"column": "caption_len"},
    }
    if status is not None or status_fields:
        obj["status"] = {**(status or {}), **status_fields}
    return obj


def condition(ctype, status, reason="", message=""):
    return {"type": ctype, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T00:00:00Z"}


@pytest.fixture(params=[lua51, lua54], ids=["lua5.1", "lua5.4"])
def health(request):
    module = request.param

    def run(obj: dict) -> dict:
        lua = module.LuaRuntime(unpack_returned_tuples=True)
        # JSON numbers reach gopher-lua as floats: mirror that, so integer-only formatting fails here too.
        lua.globals().obj = lua.table_from(_floats(copy.deepcopy(obj)), recursive=True)
        hs = lua.execute(HEALTH_LUA)
        assert hs is not None, "the script must `return hs`"
        result = {k: hs[k] for k in ("status", "message")}
        assert set(dict(hs.items())) <= {"status", "message"}, dict(hs.items())
        return result

    run.version = module.LuaRuntime().eval("_VERSION")
    return run


def _floats(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, int):
        return float(v)
    if isinstance(v, dict):
        return {k: _floats(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_floats(x) for x in v]
    return v


def test_interpreter_is_real(health):
    assert health.version in ("Lua 5.1", "Lua 5.4")


def test_no_status_yet_is_progressing(health):
    assert health(backfill()) == {"status": "Progressing", "message": "Waiting for the operator to report status"}


@pytest.mark.parametrize("phase", ["Pending", "Provisioning", "Running"])
def test_active_phases_are_progressing(health, phase):
    hs = health(backfill(phase=phase, observedGeneration=3))
    assert hs == {"status": "Progressing", "message": phase}


def test_running_shows_progress(health):
    hs = health(backfill(phase="Running", observedGeneration=3, message="job running",
                         progress={"percent": 41, "rowsDone": 4100000, "rowsTotal": 10000000},
                         rows="4.1M/10.0M"))
    assert hs == {"status": "Progressing", "message": "Running: job running (41%, 4.1M/10.0M rows)"}


def test_fractional_percent_does_not_break_lua51(health):
    hs = health(backfill(phase="Running", observedGeneration=3, progress={"percent": 41.7}))
    assert hs == {"status": "Progressing", "message": "Running (41%)"}


def test_status_without_phase_is_progressing(health):
    hs = health(backfill(observedGeneration=3, conditions=[condition("ClusterReady", "False", "Creating")]))
    assert hs["status"] == "Progressing"


def test_succeeded_is_healthy(health):
    hs = health(backfill(phase="Succeeded", observedGeneration=3, progress={"percent": 100}, rows="10/10",
                         conditions=[condition("Complete", "True", "JobSucceeded")]))
    assert hs == {"status": "Healthy", "message": "Backfill complete (100%, 10/10 rows)"}
    hs = health(backfill(phase="Succeeded", observedGeneration=3, message="10 rows written at version 7"))
    assert hs == {"status": "Healthy", "message": "10 rows written at version 7"}


def test_failed_is_degraded_with_message(health):
    hs = health(backfill(phase="Failed", observedGeneration=3, reason="BackoffLimitExceeded",
                         message="UDF raised ValueError: bad caption",
                         conditions=[condition("Failed", "True", "BackoffLimitExceeded", "3 attempts failed")]))
    assert hs == {"status": "Degraded", "message": "UDF raised ValueError: bad caption"}


def test_failed_falls_back_to_condition_then_reason(health):
    hs = health(backfill(phase="Failed", observedGeneration=3, reason="DeadlineExceeded",
                         conditions=[condition("Progressing", "False", "x", "not this one"),
                                     condition("Failed", "True", "DeadlineExceeded", "activeDeadlineSeconds passed")]))
    assert hs == {"status": "Degraded", "message": "activeDeadlineSeconds passed"}
    hs = health(backfill(phase="Failed", observedGeneration=3, reason="DeadlineExceeded"))
    assert hs == {"status": "Degraded", "message": "DeadlineExceeded"}
    hs = health(backfill(phase="Failed", observedGeneration=3, message=""))
    assert hs == {"status": "Degraded", "message": "Backfill failed"}


def test_suspended(health):
    hs = health(backfill(phase="Suspended", observedGeneration=3))
    assert hs == {"status": "Suspended", "message": "Backfill suspended"}


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Suspended", "Running"])
def test_stale_status_is_progressing(health, phase):
    """A status written for an older spec says nothing about the current one (e.g. a fixed spec
    after a failure): Progressing until the operator catches up."""
    hs = health(backfill(phase=phase, observedGeneration=2, message="old"))
    assert hs == {"status": "Progressing", "message": "Waiting for the operator to observe generation 3"}
    hs = health(backfill(phase=phase, message="never observed"))
    assert hs["status"] == "Progressing"


def test_unknown_phase(health):
    assert health(backfill(phase="Exploded", observedGeneration=3)) == {
        "status": "Unknown", "message": "Unknown phase Exploded"}


def test_phases_cover_the_api():
    """Every phase of the API maps to a deliberate branch (a new phase must be added here)."""
    from geneva_operator.api.models import Phase

    assert {p.value for p in Phase} == {"Pending", "Provisioning", "Running", "Succeeded", "Failed", "Suspended"}
    for p in Phase:
        assert f'"{p.value}"' in HEALTH_LUA, p


def test_cm_patch_embeds_exactly_health_lua():
    patch = yaml.safe_load((REPO / "argocd" / "argocd-cm-patch.yaml").read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"] == {HEALTH_KEY: HEALTH_LUA}


def test_application_points_at_the_chart_and_its_values_render(helm, tmp_path):
    app = yaml.safe_load((REPO / "argocd" / "application.yaml").read_text())
    assert app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application"
    src = app["spec"]["source"]
    assert (REPO / src["path"] / "Chart.yaml").is_file()
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    # the example's values pass the chart's schema and template checks
    values = src["helm"]["valuesObject"]
    docs = helm.template(values=values, tmp=tmp_path, namespace=app["spec"]["destination"]["namespace"])
    assert any(d["kind"] == "StatefulSet" for d in docs)
