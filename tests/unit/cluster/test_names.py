"""Cluster names KubeRay accepts, and the dashboard URL the operator calls."""
from __future__ import annotations

import re

import pytest

from geneva_operator.cluster import dashboard_url, ray_cluster_name
from geneva_operator.settings import DEFAULT_DASHBOARD_URL_TEMPLATE, OperatorSettings

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def kuberay_accepts(name: str) -> bool:
    # ValidateRayClusterMetadata: <= 53 characters and a DNS-1035 label.
    return len(name) <= 53 and bool(DNS1035.match(name))


def test_a_short_name_gets_the_ray_suffix():
    assert ray_cluster_name("embed-captions") == "embed-captions-ray"


@pytest.mark.parametrize("backfill", ["a" * 49, "a" * 50, "x" * 253, "captions.v2", "2024-embeddings", "a-" * 40])
def test_every_valid_backfill_name_maps_to_a_name_kuberay_accepts(backfill):
    name = ray_cluster_name(backfill)
    assert kuberay_accepts(name), name
    # KubeRay's longest derived name is the head service.
    assert len(f"{name}-head-svc") <= 63


def test_the_longest_plain_name_is_kept_as_is():
    assert ray_cluster_name("a" * 49) == "a" * 49 + "-ray"


def test_shortened_names_stay_distinct_and_stable():
    one, two = ray_cluster_name("x" * 60 + "-one"), ray_cluster_name("x" * 60 + "-two")
    assert one != two
    assert one == ray_cluster_name("x" * 60 + "-one")
    assert ray_cluster_name("a.b") != ray_cluster_name("a-b")


def test_default_dashboard_url_is_kuberays_head_service():
    url = dashboard_url(DEFAULT_DASHBOARD_URL_TEMPLATE, cluster_name="embed-ray", namespace="geneva")
    assert url == "http://embed-ray-head-svc.geneva.svc:8265"


def test_a_template_can_point_at_a_local_ray():
    assert dashboard_url("http://127.0.0.1:8265", cluster_name="c", namespace="n") == "http://127.0.0.1:8265"


def test_unknown_placeholders_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\{name\}"):
        dashboard_url("http://{name}:8265", cluster_name="c", namespace="n")


def test_operator_settings_come_from_geneva_environment(monkeypatch):
    monkeypatch.setenv("GENEVA_DASHBOARD_URL_TEMPLATE", "http://127.0.0.1:{namespace}")
    monkeypatch.setenv("GENEVA_NAMESPACES", "geneva, team-a")
    monkeypatch.setenv("GENEVA_RAY_TOKEN_SECRET", "ray-token")
    monkeypatch.setenv("GENEVA_POLL_INTERVAL_SECONDS", "2.5")
    s = OperatorSettings()
    assert s.dashboard_url_template == "http://127.0.0.1:{namespace}"
    assert s.namespaces == ["geneva", "team-a"]
    assert s.ray_token_secret == "ray-token"
    assert s.poll_interval_seconds == 2.5


def test_namespaces_may_be_json(monkeypatch):
    monkeypatch.setenv("GENEVA_NAMESPACES", '["a", "b"]')
    assert OperatorSettings().namespaces == ["a", "b"]


def test_a_bad_template_in_the_environment_stops_the_operator(monkeypatch):
    monkeypatch.setenv("GENEVA_DASHBOARD_URL_TEMPLATE", "http://{cluster}.{ns}:8265")
    with pytest.raises(ValueError, match=r"\{ns\}"):
        OperatorSettings()


def test_defaults_without_environment(monkeypatch):
    for key in ("GENEVA_DASHBOARD_URL_TEMPLATE", "GENEVA_NAMESPACES", "GENEVA_RAY_TOKEN_SECRET"):
        monkeypatch.delenv(key, raising=False)
    s = OperatorSettings()
    assert (s.dashboard_url_template, s.namespaces, s.ray_token_secret, s.gpu_toleration) == (
        DEFAULT_DASHBOARD_URL_TEMPLATE, [], None, True,
    )
