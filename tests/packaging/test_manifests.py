"""deploy/: the plain manifests rendered from the chart, and kopf's peering CRDs."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.packaging.helmtools import KUBE_VERSION, REPO, by_kind

pytestmark = pytest.mark.packaging

DEPLOY = REPO / "deploy"


def test_rendered_manifest_is_up_to_date(helm_bin):
    """deploy/geneva-operator.yaml is exactly what deploy/render.sh makes of the current chart:
    re-run deploy/render.sh after changing the chart."""
    proc = subprocess.run(["bash", str(DEPLOY / "render.sh"), "--stdout"], capture_output=True, text=True,
                          env={**os.environ, "HELM": helm_bin, "KUBE_VERSION": KUBE_VERSION})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (DEPLOY / "geneva-operator.yaml").read_text(), "stale: run deploy/render.sh"


def test_rendered_manifest_is_complete():
    docs = [d for d in yaml.safe_load_all((DEPLOY / "geneva-operator.yaml").read_text()) if d]
    ns = by_kind(docs, "Namespace")
    assert [n["metadata"]["name"] for n in ns] == ["geneva-system"]
    assert docs[0]["kind"] == "Namespace"  # applied before anything namespaced in it
    # CRDs are applied from crds/ (see render.sh): a CRD change must not make this file stale
    assert not by_kind(docs, "CustomResourceDefinition")
    for d in docs:
        if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == "geneva-system", d["metadata"]
    assert len(by_kind(docs, "StatefulSet")) == 1


def test_kopf_peering_crds_match_kopf():
    """The peering CRDs are the ones the installed kopf looks for (group, version, plural, scope)."""
    from kopf._cogs.structs import references

    docs = [d for d in yaml.safe_load_all((DEPLOY / "kopf-peering-crds.yaml").read_text()) if d]
    crds = {d["spec"]["names"]["plural"]: d for d in docs}
    expected = {
        references.CLUSTER_PEERINGS_K: ("ClusterKopfPeering", "Cluster"),
        references.NAMESPACED_PEERINGS_K: ("KopfPeering", "Namespaced"),
    }
    assert set(crds) == {sel.any_name for sel in expected}
    for sel, (kind, scope) in expected.items():
        crd = crds[sel.any_name]
        assert crd["metadata"]["name"] == f"{sel.any_name}.{sel.group}"
        assert crd["spec"]["group"] == sel.group
        assert crd["spec"]["names"]["kind"] == kind
        assert crd["spec"]["scope"] == scope
        (version,) = crd["spec"]["versions"]
        assert version["name"] == sel.version and version["served"] and version["storage"]
        # kopf writes its keep-alives into status: it must not be pruned
        status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True


def test_chart_peering_objects_use_these_crds(helm):
    crd_kinds = {d["spec"]["names"]["kind"]: d["spec"]["group"] + "/" + d["spec"]["versions"][0]["name"]
                 for d in yaml.safe_load_all((DEPLOY / "kopf-peering-crds.yaml").read_text()) if d}
    for args in (["peering.enabled=true"], ["peering.enabled=true", "watchNamespaces={a}"]):
        docs = helm.template(*args)
        peerings = [d for d in docs if d["kind"] in crd_kinds]
        assert len(peerings) == 1, args
        assert peerings[0]["apiVersion"] == crd_kinds[peerings[0]["kind"]]
