"""The oldest Kubernetes the chart claims (Chart.yaml kubeVersion), judged by a real
kube-apiserver of that minor: built from its Go module like the pinned one
(OLDEST_KUBERNETES_VERSION in versions.env, build.sh kubernetes-oldest), run alone on etcd on
loopback (no controllers: what is checked is what the API server admits).

- the claim is exactly that minor: helm refuses the one before, and the README says so;
- the CRDs (crds/ and the chart's copy, identical by test_crd.py) are accepted: structural
  schema, defaults, and every CEL rule compiling within that version's cost budget;
- `helm install` of the chart succeeds there, in both RBAC scopes, with peering and network
  policies: helm reads the server's version against kubeVersion and every object is created;
- the CEL rules and the schema admit and refuse the same manifests as the current Kubernetes
  (crd_cases.py: the cases test_crd_apiserver.py runs offline on the pinned version), and the
  defaults the server applies are pydantic's.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from geneva_operator.api import crd
from geneva_operator.api.models import BackfillSpec
from tests.controlplane.harness import ApiServerOnly, ensure_oldest_apiserver, read_versions
from tests.packaging.helmtools import CHART, REPO, Helm, HelmError
from tests.unit.api.crd_cases import BASE, CASES, drop_empty, manifest, present

pytestmark = [pytest.mark.packaging, pytest.mark.cluster]

OLDEST = read_versions()["OLDEST_KUBERNETES_VERSION"]
MINOR = int(OLDEST.split(".")[1])
CASES_NAMESPACE = "n"  # the cases' own


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    cp = ApiServerOnly(ensure_oldest_apiserver(), tmp_path_factory.mktemp("oldest-apiserver") / "state")
    cp.start()
    try:
        yield cp
    finally:
        cp.stop(remove_state=True)


@pytest.fixture(scope="module")
def crds_dry_run(server):
    # Before the chart creates the CRD: a server-side dry-run create runs the whole validation.
    files = [REPO / d / crd.CRD_FILE for d in crd.OUTPUT_DIRS]
    return server.kubectl("create", "--dry-run=server", "-o", "name", *[a for f in files for a in ("-f", str(f))],
                          check=False)


@pytest.fixture(scope="module")
def cluster_helm(server, crds_dry_run, helm_bin, tmp_path_factory) -> Helm:
    helm = Helm(helm_bin, tmp_path_factory.mktemp("helm-state-oldest"))
    helm.env["KUBECONFIG"] = str(server.kubeconfig)  # these installs are meant for that server
    return helm


@pytest.fixture(scope="module")
def installed(server, cluster_helm):
    """The chart installed with its defaults (it creates the CRD from its crds/)."""
    cluster_helm.run("install", "geneva-operator", str(CHART), "--namespace", "geneva-system", "--create-namespace")
    server.wait_established(crd.CRD_NAME)
    return server


def test_the_server_is_the_oldest_claimed_version(server):
    assert server.kubectl_json("version")["serverVersion"]["gitVersion"] == OLDEST


def test_the_chart_claims_exactly_the_tested_minor(cluster_helm):
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"] == f">=1.{MINOR}.0-0"
    with pytest.raises(HelmError, match="kubeVersion"):
        cluster_helm.run("template", "r", str(CHART), "--kube-version", f"v1.{MINOR - 1}.0")


def test_the_readme_states_the_tested_range():
    current = read_versions()["KUBERNETES_VERSION"].split(".")[1]
    assert f"Kubernetes 1.{MINOR} to 1.{current}" in (REPO / "README.md").read_text()


def test_the_crds_are_accepted(crds_dry_run):
    assert crds_dry_run.returncode == 0, crds_dry_run.stderr
    assert crds_dry_run.stdout.split() == [f"customresourcedefinition.apiextensions.k8s.io/{crd.CRD_NAME}"] * 2


def test_the_server_refuses_a_cel_library_of_a_later_kubernetes(server):
    # The check can fail: isQuantity (Kubernetes 1.29's quantity library) compiles on the
    # current Kubernetes, not on 1.28.
    newer = crd.build_crd()
    newer["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"].append(
        {"rule": "isQuantity(self.column)", "message": "x"})
    done = server.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(newer), check=False)
    assert done.returncode != 0 and "undeclared reference to 'isQuantity'" in done.stderr, done.stderr


def test_helm_installs_the_chart(installed, cluster_helm):
    status = json.loads(cluster_helm.run("status", "geneva-operator", "-n", "geneva-system", "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    sts = installed.kubectl_json("get", "statefulset", "-n", "geneva-system")["items"]
    assert [s["metadata"]["name"] for s in sts] == ["geneva-operator"]


def test_helm_installs_the_namespaced_chart_with_peering_and_network_policies(installed, cluster_helm):
    installed.kubectl("create", "-f", str(REPO / "deploy" / "kopf-peering-crds.yaml"))
    installed.wait_established("kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev")
    for ns in ("team-a", "team-b"):
        installed.kubectl("create", "namespace", ns)
    cluster_helm.run("install", "geneva-ns", str(CHART), "--namespace", "geneva-ns", "--create-namespace",
                     "--skip-crds", "--set", "rbac.scope=namespaced", "--set", "watchNamespaces={team-a,team-b}",
                     "--set", "replicaCount=2", "--set", "peering.enabled=true", "--set", "networkPolicy.enabled=true")
    peerings = installed.kubectl_json("get", "kopfpeerings.kopf.dev", "-A")["items"]
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]
    policies = installed.kubectl_json("get", "networkpolicies", "-n", "geneva-ns")["items"]
    assert policies


def case_name(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@pytest.fixture(scope="module")
def admitted(installed) -> dict[str, dict]:
    """Each case as a dry-run create, or, for a case with an old object, that object created
    for real and then the case as a dry-run server-side apply over it (an update)."""
    installed.kubectl("create", "namespace", CASES_NAMESPACE)
    out = {}
    for name, spec, old, _ in CASES:
        obj = manifest(present(spec))
        obj["metadata"]["name"] = case_name(name)
        verb = ["create"]
        if old:
            first = manifest(old)
            first["metadata"]["name"] = obj["metadata"]["name"]
            installed.kubectl("apply", "--server-side", "-f", "-", input=json.dumps(first))
            verb = ["apply", "--server-side"]
        done = installed.kubectl(*verb, "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=False)
        out[name] = {"error": done.stderr if done.returncode else None,
                     "served": json.loads(done.stdout) if done.returncode == 0 else None}
    return out


@pytest.mark.parametrize("name, spec, old, expected", CASES, ids=[c[0] for c in CASES])
def test_the_oldest_api_server_admits_or_refuses_as_the_current_one(admitted, name, spec, old, expected):
    error = admitted[name]["error"]
    if expected is None:
        assert error is None
    else:
        assert error is not None and expected in error, error


def test_the_oldest_api_servers_defaults_are_pydantics(admitted):
    served = admitted["minimal"]["served"]["spec"]
    assert drop_empty(served) == drop_empty(BackfillSpec.model_validate(BASE).to_wire())
