"""The Helm chart, rendered by a real helm: lint, every install mode, least-privilege RBAC,
the operator's security context, network policies, schema rejections, determinism, CRDs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.packaging.helmtools import CHART, KUBE_VERSION, NAMESPACE, RELEASE, REPO, HelmError, by_kind, one

pytestmark = pytest.mark.packaging

FULLNAME = RELEASE  # release name == chart name -> fullname is the release name
OPERATOR_LABELS = {
    "app.kubernetes.io/name": "geneva-operator",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/component": "operator",
}

# Everything the operator may do in a namespace it serves, and nothing more. A change to the
# chart's RBAC must change this table too, on purpose.
NAMESPACED_RULES = {
    ("geneva.lancedb.com", "genevabackfills"): {"get", "list", "watch", "patch", "update"},
    ("geneva.lancedb.com", "genevabackfills/status"): {"get", "patch", "update"},
    ("geneva.lancedb.com", "genevabackfills/finalizers"): {"update"},
    ("ray.io", "rayclusters"): {"get", "list", "watch", "create", "patch", "delete"},
    ("", "events"): {"create", "patch"},
    ("events.k8s.io", "events"): {"create", "patch"},
    ("", "pods"): {"list", "watch"},  # the Ray pod index: why a cluster does not start
    ("", "secrets"): {"get"},
}
CLUSTER_RULES = {
    # list/watch: kopf's; get: the KubeRay CRD only (test_rbac_kuberay_crd_read_is_that_one_crd)
    ("apiextensions.k8s.io", "customresourcedefinitions"): {"get", "list", "watch"},
    ("", "namespaces"): {"list", "watch"},
}
PEERING_VERBS = {"get", "list", "watch", "patch"}


def rule_table(role: dict) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in role.get("rules") or []:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                table.setdefault((group, res), set()).update(rule["verbs"])
    return table


def assert_no_wildcards(docs: list[dict]) -> None:
    for role in by_kind(docs, "Role") + by_kind(docs, "ClusterRole"):
        for rule in role.get("rules") or []:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert "*" not in (rule.get(field) or []), (role["metadata"]["name"], rule)
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"]), rule
            if "secrets" in rule["resources"]:
                assert rule["verbs"] == ["get"], rule  # never list/watch: they would read every Secret


def statefulset(docs):
    return one(docs, "StatefulSet", FULLNAME, NAMESPACE)


def operator_container(docs):
    (c,) = statefulset(docs)["spec"]["template"]["spec"]["containers"]
    return c


# ---------------------------------------------------------------- lint and default render


def test_helm_lint_strict(helm):
    out = helm.run("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


@pytest.mark.parametrize("values", [
    {"watchNamespaces": ["team-a", "team-b"], "rbac": {"scope": "namespaced"}},
    {"replicaCount": 3, "peering": {"enabled": True}, "networkPolicy": {"enabled": True},
     "metrics": {"serviceMonitor": {"enabled": True}}},
], ids=["namespaced", "ha-netpol-monitor"])
def test_helm_lint_strict_other_modes(helm, values, tmp_path):
    vf = tmp_path / "v.yaml"
    vf.write_text(yaml.safe_dump(values))
    helm.run("lint", "--strict", "--kube-version", KUBE_VERSION, str(CHART), "--values", str(vf))


def test_default_render(helm):
    docs = helm.template()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted([
        "ServiceAccount",  # operator
        "ServiceAccount", "Role", "RoleBinding",  # ray runner, in the release namespace
        "ClusterRole", "ClusterRoleBinding",  # cluster-scoped reads
        "ClusterRole", "ClusterRoleBinding",  # namespaced permissions, all namespaces
        "Service", "StatefulSet",
    ]), kinds
    c = operator_container(docs)
    assert c["command"] == ["kopf", "run"]
    assert c["args"][:5] == [
        "--module=geneva_operator.handlers",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--all-namespaces",
        "--standalone",
        "--log-format=json",
    ]
    sts = statefulset(docs)
    assert sts["spec"]["replicas"] == 1
    # the StatefulSet's governing Service exists
    one(docs, "Service", sts["spec"]["serviceName"], NAMESPACE)
    # nothing of peering without peering
    assert not [d for d in docs if d["apiVersion"].startswith("kopf.dev/")]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert "GENEVA_PEERING_PRIORITY" not in env
    # settings the operator reads (geneva_operator.settings / metrics)
    assert env["GENEVA_NAMESPACES"] == ""
    assert env["GENEVA_METRICS_PORT"] == "8080"
    assert "GENEVA_DASHBOARD_URL_TEMPLATE" not in env  # the operator's default unless set


def test_kube_version_floor(helm):
    """The pod-index label (peering priorities) needs Kubernetes 1.28: older clusters are refused."""
    proc = helm.run("template", RELEASE, str(CHART), "--kube-version", "v1.27.9", check=False)
    assert proc.returncode != 0
    assert "incompatible with Kubernetes v1.27.9" in proc.stderr


def test_image_defaults_to_app_version(helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    c = operator_container(helm.template())
    assert c["image"] == f"ghcr.io/lancedb/geneva-operator:{chart['appVersion']}"


def test_ray_image_is_the_ray_worker_image_of_the_app_version_in_the_operators_registry(helm):
    def ray_image(*values: str) -> str:
        env = {e["name"]: e.get("value") for e in operator_container(helm.template(*values))["env"]}
        return env["GENEVA_DEFAULT_RAY_IMAGE"]

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert ray_image() == f"ghcr.io/lancedb/geneva-ray-worker:{chart['appVersion']}"
    # One value moves both images into an air-gapped registry.
    docs = helm.template("image.registry=registry.corp.example:5000/mirror")
    assert operator_container(docs)["image"].startswith("registry.corp.example:5000/mirror/lancedb/geneva-operator:")
    assert ray_image("image.registry=registry.corp.example:5000/mirror") == (
        f"registry.corp.example:5000/mirror/lancedb/geneva-ray-worker:{chart['appVersion']}")
    assert ray_image("rayImage.registry=gpu.example", "rayImage.repository=ml/ray-cuda", "rayImage.tag=0.1.0-cu12") == (
        "gpu.example/ml/ray-cuda:0.1.0-cu12")
    digest = "sha256:" + "cd" * 32
    assert ray_image("image.registry=", f"rayImage.digest={digest}") == f"lancedb/geneva-ray-worker@{digest}"


def test_private_registry_overrides(helm):
    docs = helm.template(
        "image.registry=registry.corp.example:5000/mirror",
        "image.repository=platform/geneva-operator",
        "image.tag=0.1.0-rc1",
        "image.pullPolicy=Always",
        "imagePullSecrets[0].name=corp-registry",
    )
    c = operator_container(docs)
    assert c["image"] == "registry.corp.example:5000/mirror/platform/geneva-operator:0.1.0-rc1"
    assert c["imagePullPolicy"] == "Always"
    assert statefulset(docs)["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "corp-registry"}]

    digest = "sha256:" + "ab" * 32
    c = operator_container(helm.template("image.registry=", f"image.digest={digest}"))
    assert c["image"] == f"lancedb/geneva-operator@{digest}"


# ---------------------------------------------------------------- security context


def test_operator_security_context(helm):
    docs = helm.template()
    pod = statefulset(docs)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    c = operator_container(docs)
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # read-only root: /tmp is a bounded emptyDir
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    # requests and limits for both cpu and memory
    for kind in ("requests", "limits"):
        assert set(c["resources"][kind]) == {"cpu", "memory"}, c["resources"]
    # probes hit kopf's liveness endpoint, on the port and path passed to --liveness
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert f"--liveness=http://0.0.0.0:{ports['health']}/healthz" in c["args"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
    assert ports["metrics"] == 8080


# ---------------------------------------------------------------- RBAC modes


def test_rbac_cluster_all_namespaces(helm):
    docs = helm.template()
    assert_no_wildcards(docs)
    assert rule_table(one(docs, "ClusterRole", f"{FULLNAME}-cluster")) == CLUSTER_RULES
    assert rule_table(one(docs, "ClusterRole", FULLNAME)) == NAMESPACED_RULES
    assert not by_kind(docs, "RoleBinding") or all(
        rb["roleRef"]["kind"] == "Role" and rb["metadata"]["name"] == "geneva-ray-runner"
        for rb in by_kind(docs, "RoleBinding"))
    for crb in by_kind(docs, "ClusterRoleBinding"):
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_rbac_cluster_scope_with_explicit_namespaces(helm):
    """Cluster scope + a namespace list: the namespaced permissions are bound in those
    namespaces only (RoleBindings to the ClusterRole), never cluster-wide."""
    docs = helm.template("watchNamespaces={team-a,team-b}")
    assert_no_wildcards(docs)
    crbs = by_kind(docs, "ClusterRoleBinding")
    assert [c["roleRef"]["name"] for c in crbs] == [f"{FULLNAME}-cluster"]
    op_rbs = [rb for rb in by_kind(docs, "RoleBinding") if rb["roleRef"]["name"] == FULLNAME]
    assert sorted(rb["metadata"]["namespace"] for rb in op_rbs) == ["team-a", "team-b"]
    assert all(rb["roleRef"]["kind"] == "ClusterRole" for rb in op_rbs)
    args = operator_container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_rbac_namespaced_mode(helm):
    docs = helm.template("rbac.scope=namespaced", "watchNamespaces={team-a,team-b,team-a}")
    assert_no_wildcards(docs)
    # nothing cluster-scoped: a namespace admin can install this
    assert not by_kind(docs, "ClusterRole") and not by_kind(docs, "ClusterRoleBinding")
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]  # de-duplicated
    for r in roles:
        assert rule_table(r) == NAMESPACED_RULES
    for rb in by_kind(docs, "RoleBinding"):
        assert rb["roleRef"]["kind"] == "Role"
    args = operator_container(docs)["args"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    # the operator's own setting names the same namespaces kopf serves
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert env["GENEVA_NAMESPACES"] == "team-a,team-b"
    # the runner ServiceAccount follows the watched namespaces
    runners = [sa for sa in by_kind(docs, "ServiceAccount") if sa["metadata"]["name"] == "geneva-ray-runner"]
    assert sorted(sa["metadata"]["namespace"] for sa in runners) == ["team-a", "team-b"]


KUBERAY_CRD_RULE = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                    "resourceNames": ["rayclusters.ray.io"], "verbs": ["get"]}


def test_rbac_kuberay_crd_read_is_that_one_crd(helm):
    """The operator reads what KubeRay supports from rayclusters.ray.io: get on that CRD, by name."""
    rules = one(helm.template(), "ClusterRole", f"{FULLNAME}-cluster")["rules"]
    assert KUBERAY_CRD_RULE in rules
    assert [r for r in rules if "get" in r["verbs"] and "customresourcedefinitions" in r["resources"]] == [KUBERAY_CRD_RULE]
    # namespaced scope: nothing cluster-scoped unless the one CRD read is opted into
    base = ("rbac.scope=namespaced", "watchNamespaces={team-a}")
    assert not by_kind(helm.template(*base), "ClusterRole")
    docs = helm.template(*base, "rbac.kubeRayCRDReader=true")
    assert one(docs, "ClusterRole", f"{FULLNAME}-kuberay-crd")["rules"] == [KUBERAY_CRD_RULE]
    [crb] = by_kind(docs, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == f"{FULLNAME}-kuberay-crd"
    assert crb["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}]


def test_rbac_secrets_restricted_and_disabled(helm):
    docs = helm.template("rbac.secrets.resourceNames={ray-dashboard-token}")
    (rule,) = [r for r in one(docs, "ClusterRole", FULLNAME)["rules"] if "secrets" in r["resources"]]
    assert rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"],
                    "resourceNames": ["ray-dashboard-token"]}
    # the operator-wide default token Secret joins a restricted list (else it could not read it)
    docs = helm.template("rbac.secrets.resourceNames={a}", "operator.rayTokenSecret=ray-token")
    (rule,) = [r for r in one(docs, "ClusterRole", FULLNAME)["rules"] if "secrets" in r["resources"]]
    assert rule["resourceNames"] == ["a", "ray-token"]
    env = {e["name"]: e.get("value") for e in operator_container(docs)["env"]}
    assert env["GENEVA_RAY_TOKEN_SECRET"] == "ray-token"
    docs = helm.template("rbac.secrets.enabled=false")
    assert ("", "secrets") not in rule_table(one(docs, "ClusterRole", FULLNAME))


def test_rbac_peering_permissions(helm):
    docs = helm.template("replicaCount=2", "peering.enabled=true")
    assert_no_wildcards(docs)
    assert rule_table(one(docs, "ClusterRole", f"{FULLNAME}-cluster")) == {
        **CLUSTER_RULES, ("kopf.dev", "clusterkopfpeerings"): PEERING_VERBS}
    assert rule_table(one(docs, "ClusterRole", FULLNAME)) == NAMESPACED_RULES
    one(docs, "ClusterKopfPeering", "geneva-operator")

    docs = helm.template("replicaCount=2", "peering.enabled=true", "rbac.scope=namespaced",
                         "watchNamespaces={team-a}")
    role = one(docs, "Role", FULLNAME, "team-a")
    assert rule_table(role) == {**NAMESPACED_RULES, ("kopf.dev", "kopfpeerings"): PEERING_VERBS}
    one(docs, "KopfPeering", "geneva-operator", "team-a")
    assert not by_kind(docs, "ClusterKopfPeering")


def test_peering_args_and_distinct_priorities(helm):
    """kopf pauses every operator whose peers share its priority: each pod's priority must be
    its StatefulSet ordinal, and --standalone must be gone."""
    docs = helm.template("replicaCount=3", "peering.enabled=true")
    sts = statefulset(docs)
    assert sts["spec"]["replicas"] == 3
    c = operator_container(docs)
    assert "--peering=geneva-operator" in c["args"]
    assert "--priority=$(GENEVA_PEERING_PRIORITY)" in c["args"]
    assert "--standalone" not in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["GENEVA_PEERING_PRIORITY"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_ray_runner_service_account(helm):
    docs = helm.template(
        "watchNamespaces={team-a}",
        "rayRunner.awsRoleArn=arn:aws:iam::123456789012:role/geneva",
        "rayRunner.gcpServiceAccount=geneva@proj.iam.gserviceaccount.com",
        "rayRunner.annotations.team=data",
    )
    sa = one(docs, "ServiceAccount", "geneva-ray-runner", "team-a")
    assert sa["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/geneva",
        "iam.gke.io/gcp-service-account": "geneva@proj.iam.gserviceaccount.com",
        "team": "data",
    }
    # the backfill needs no Kubernetes API access: its Role is empty, and bound to it alone
    assert one(docs, "Role", "geneva-ray-runner", "team-a")["rules"] == []
    rb = one(docs, "RoleBinding", "geneva-ray-runner", "team-a")
    assert rb["subjects"] == [{"kind": "ServiceAccount", "name": "geneva-ray-runner", "namespace": "team-a"}]
    # no annotations key at all when nothing is configured
    sa = one(helm.template(), "ServiceAccount", "geneva-ray-runner", NAMESPACE)
    assert "annotations" not in sa["metadata"]


# ---------------------------------------------------------------- network policies, metrics


def test_network_policies(helm):
    docs = helm.template("networkPolicy.enabled=true", "watchNamespaces={team-a,team-b}")
    pols = {(p["metadata"]["namespace"], p["metadata"]["name"]): p["spec"] for p in by_kind(docs, "NetworkPolicy")}
    assert sorted(pols) == sorted(
        [(NAMESPACE, f"{FULLNAME}-operator")]
        + [(ns, f"{FULLNAME}-ray-{n}") for ns in ("team-a", "team-b") for n in ("internal", "egress", "dashboard")])

    op = pols[(NAMESPACE, f"{FULLNAME}-operator")]
    assert op["podSelector"] == {"matchLabels": OPERATOR_LABELS}
    assert op["policyTypes"] == ["Ingress", "Egress"]
    api, dns, dash = op["egress"]
    assert {p["port"] for p in api["ports"]} == {443, 6443}
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}
    assert dash["ports"] == [{"port": 8265, "protocol": "TCP"}]
    (peer,) = dash["to"]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a", "team-b"]}]
    ray_sel = {"ray.io/is-ray-node": "yes", "app.kubernetes.io/managed-by": "geneva-operator"}
    head_sel = {**ray_sel, "ray.io/node-type": "head"}
    assert peer["podSelector"] == {"matchLabels": head_sel}
    assert {p["port"] for r in op["ingress"] for p in r["ports"]} == {"metrics", "health"}

    internal = pols[("team-a", f"{FULLNAME}-ray-internal")]
    assert internal["podSelector"] == {"matchLabels": ray_sel}
    assert internal["ingress"] == [{"from": [{"podSelector": {"matchLabels": ray_sel}}]}]
    assert internal["egress"] == [{"to": [{"podSelector": {"matchLabels": ray_sel}}]}]

    egress = pols[("team-a", f"{FULLNAME}-ray-egress")]
    assert egress["policyTypes"] == ["Egress"]
    _, storage = egress["egress"]
    assert storage == {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443, "protocol": "TCP"}]}

    dashboard = pols[("team-b", f"{FULLNAME}-ray-dashboard")]
    assert dashboard["podSelector"] == {"matchLabels": head_sel}
    assert dashboard["policyTypes"] == ["Ingress"]
    assert dashboard["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}},
                  "podSelector": {"matchLabels": OPERATOR_LABELS}}],
        "ports": [{"port": 8265, "protocol": "TCP"}],
    }]
    # The operator's pods really carry the labels the dashboard policy admits.
    pod_labels = statefulset(docs)["spec"]["template"]["metadata"]["labels"]
    assert OPERATOR_LABELS.items() <= pod_labels.items()


def test_network_policies_configurable(helm, tmp_path):
    docs = helm.template(values={"networkPolicy": {
        "enabled": True,
        "apiServer": {"cidrs": ["10.0.0.1/32"], "ports": [443]},
        "dns": {"to": []},
        "ray": {"objectStorage": {"cidrs": ["52.216.0.0/15"], "ports": [443]},
                "apiServerEgress": True,
                "extraEgress": [{"ports": [{"port": 6379, "protocol": "TCP"}]}]},
    }}, tmp=tmp_path)
    op = one(docs, "NetworkPolicy", f"{FULLNAME}-operator")["spec"]
    api, dns, dash = op["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert "to" not in dns  # dns.to: [] = any destination
    # all namespaces watched: the dashboards may be in any namespace
    assert dash["to"][0]["namespaceSelector"] == {}
    egress = one(docs, "NetworkPolicy", f"{FULLNAME}-ray-egress", NAMESPACE)["spec"]["egress"]
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "52.216.0.0/15"}}]
    assert egress[2] == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"port": 443, "protocol": "TCP"}]}
    assert egress[3] == {"ports": [{"port": 6379, "protocol": "TCP"}]}


def test_network_policies_off_by_default(helm):
    assert not by_kind(helm.template(), "NetworkPolicy")


def test_metrics_service_and_service_monitor(helm):
    docs = helm.template()
    svc = one(docs, "Service", f"{FULLNAME}-metrics")
    assert svc["spec"]["selector"] == OPERATOR_LABELS
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]
    assert not by_kind(docs, "ServiceMonitor")

    docs = helm.template("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom",
                         "metrics.serviceMonitor.namespace=monitoring")
    sm = one(docs, "ServiceMonitor", FULLNAME, "monitoring")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"] == OPERATOR_LABELS
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"


# ---------------------------------------------------------------- validation and determinism


@pytest.mark.parametrize("bad, expect", [
    (["unknownKey=1"], "unknownKey"),
    (["rbac.scope=everything"], "scope"),
    (["rbac.rolez=1"], "rolez"),
    (["image.tag=latest"], "tag"),
    (["image.pullPolicy=Sometimes"], "pullPolicy"),
    (["image.digest=md5:abc"], "digest"),
    (["rayImage.tag=latest"], "tag"),
    (["rayImage.digest=md5:abc"], "digest"),
    (["rayImage.repo=x"], "repo"),
    (["replicaCount=-1"], "replicaCount"),
    (["watchNamespaces={Bad_Namespace}"], "watchNamespaces"),
    (["networkPolicy.enabled=yes"], "enabled"),
    (["networkPolicy.apiServer.cidrs={not-a-cidr}"], "cidrs"),
    (["operator.logFormat=xml"], "logFormat"),
    (["rayRunner.awsRoleArn=my-role"], "awsRoleArn"),
    (["operator.healthPort=70000"], "healthPort"),
], ids=lambda v: v if isinstance(v, str) else v[0])
def test_schema_rejects_bad_values(helm, bad, expect):
    with pytest.raises(HelmError) as err:
        helm.template(*bad)
    assert "values don't meet the specifications of the schema" in err.value.stderr, err.value.stderr
    assert expect in err.value.stderr


@pytest.mark.parametrize("bad, expect", [
    (["rbac.scope=namespaced"], "rbac.scope=namespaced needs watchNamespaces"),
    (["replicaCount=2"], "replicaCount > 1 needs peering.enabled=true"),
])
def test_template_rejects_inconsistent_values(helm, bad, expect):
    with pytest.raises(HelmError) as err:
        helm.template(*bad)
    assert expect in err.value.stderr


def test_schema_is_strict_at_every_level():
    """additionalProperties: false on every object with declared properties, so a typo in any
    nested key fails the install instead of being ignored."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False

    def walk(node, path):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, path
            for k, v in node.items():
                walk(v, f"{path}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}/{i}")
    walk(schema, "")
    # every default value is described by the schema (no key only values.yaml knows)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


def test_rendering_is_deterministic(helm, tmp_path):
    values = {"watchNamespaces": ["b", "a"], "replicaCount": 2, "peering": {"enabled": True},
              "networkPolicy": {"enabled": True}, "metrics": {"serviceMonitor": {"enabled": True}},
              "rayRunner": {"awsRoleArn": "arn:aws:iam::123456789012:role/x"}}
    first = helm.template_text(values=values, tmp=tmp_path, include_crds=True)
    second = helm.template_text(values=values, tmp=tmp_path, include_crds=True)
    assert first == second
    # and no template function that could make them differ
    for tpl in (CHART / "templates").iterdir():
        text = tpl.read_text()
        for fn in ("randAlphaNum", "randAlpha", "randNumeric", "randAscii", "uuidv4", "now", "genCA",
                   "genSelfSignedCert", "genPrivateKey", "lookup"):
            assert f"{fn} " not in text and f"({fn})" not in text and f"{{{{ {fn}" not in text, (tpl.name, fn)


# ---------------------------------------------------------------- CRDs


def test_chart_crds_equal_generated_crds():
    """The chart ships exactly the CRDs generated from the pydantic models (crds/), byte for byte.
    Fails (never skips) while either side is missing: the generator and the chart land together."""
    repo_crds = {p.name: p.read_bytes() for p in sorted((REPO / "crds").glob("*.yaml"))}
    chart_crds = {p.name: p.read_bytes() for p in sorted((CHART / "crds").glob("*.yaml"))} \
        if (CHART / "crds").is_dir() else {}
    assert repo_crds, "crds/ has no generated CRD (make crds)"
    assert chart_crds == repo_crds, "charts/geneva-operator/crds/ differs from crds/ (make crds)"
    names = set()
    for text in repo_crds.values():
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                names.add(doc["metadata"]["name"])
    assert "genevabackfills.geneva.lancedb.com" in names


def test_rendered_crds_come_from_chart_crds_dir(helm):
    """`helm template --include-crds` emits the chart's crds/ (what `helm install` applies)."""
    docs = helm.template(include_crds=True)
    crds = {d["metadata"]["name"] for d in by_kind(docs, "CustomResourceDefinition")}
    assert "genevabackfills.geneva.lancedb.com" in crds
