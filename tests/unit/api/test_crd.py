"""The GenevaBackfill CRD: generated from the models, structural, committed in sync."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from geneva_operator.api import crd
from geneva_operator.api.models import BackfillSpec

REPO = Path(__file__).resolve().parents[3]


def nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict]]:
    """Every schema node with its path (properties by name, items as [])."""
    if not isinstance(schema, dict):
        return
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from nodes(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


@pytest.fixture(scope="module")
def schema() -> dict:
    return crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def spec_schema(schema) -> dict:
    return schema["properties"]["spec"]


def at(schema: dict, path: str) -> dict:
    node = schema
    for part in path.strip(".").split("."):
        if part == "[]":
            node = node["items"]
        else:
            node = node["properties"][part]
    return node


def test_committed_crds_match_the_models():
    # Fails when models.py changed without `python -m geneva_operator.api.crd write`.
    stale = crd.drifted(REPO)
    assert not stale, f"out of date: {[str(p.relative_to(REPO)) for p in stale]}; run python -m geneva_operator.api.crd write"


def test_check_command_reports_drift(tmp_path, capsys):
    (tmp_path / "operator" / "geneva_operator").mkdir(parents=True)
    assert crd.main(["write", "--root", str(tmp_path)]) == 0
    assert crd.main(["check", "--root", str(tmp_path)]) == 0
    (tmp_path / "charts/geneva-operator/crds" / crd.CRD_FILE).write_text("edited by hand\n")
    assert crd.main(["check", "--root", str(tmp_path)]) == 1
    assert "charts/geneva-operator/crds" in capsys.readouterr().err


def test_names_scope_and_version():
    c = crd.build_crd()
    assert c["metadata"]["name"] == "genevabackfills.geneva.lancedb.com"
    names = c["spec"]["names"]
    assert (names["kind"], names["plural"], names["singular"], names["shortNames"]) == (
        "GenevaBackfill", "genevabackfills", "genevabackfill", ["gbf"],
    )
    [version] = c["spec"]["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert c["spec"]["scope"] == "Namespaced"


def test_printer_columns_show_phase_progress_rows_cluster_age():
    [version] = crd.build_crd()["spec"]["versions"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"] if "priority" not in c}
    assert [(n, c["jsonPath"]) for n, c in columns.items()] == [
        ("Phase", ".status.phase"),
        ("Progress", ".status.progress.percent"),
        ("Rows", ".status.rows"),
        ("Cluster", ".status.rayClusterName"),
        ("Age", ".metadata.creationTimestamp"),
    ]


def test_schema_is_structural(schema):
    for path, node in nodes(schema):
        assert not {"$ref", "$defs", "anyOf", "oneOf", "allOf", "title"} & node.keys(), path
        assert "type" in node, f"{path} has no type"
        assert node.get("additionalProperties") not in (True, False), path
        if node["type"] == "object":
            assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", 0) is not None, f"{path}: null default"


def test_every_field_is_described_for_kubectl_explain(schema):
    undocumented = [p for p, node in nodes(schema) if p.startswith((".spec", ".status")) and not p.endswith(("[]", "{}"))
                    and "description" not in node]
    assert not undocumented


def test_required_lists_use_the_wire_names(spec_schema):
    assert spec_schema["required"] == ["table", "column", "udf"]
    assert at(spec_schema, ".udf")["required"] == ["function", "inputColumns", "outputType"]
    assert at(spec_schema, ".cluster.workerGroups.[]")["required"] == ["name"]


def test_optional_fields_are_plain_properties(spec_schema):
    assert at(spec_schema, ".where") == {"type": "string", "description": "Optional SQL filter selecting the rows to compute."}
    assert at(spec_schema, ".cluster")["type"] == "object"
    assert not [p for p, node in nodes(spec_schema) if "nullable" in node]


def test_defaults_are_those_of_the_models(spec_schema):
    assert at(spec_schema, ".mode")["default"] == "Missing"
    assert at(spec_schema, ".commitEvery")["default"] == 16
    # Nested defaults are written out: the API server validates a default (CEL included) as is.
    assert at(spec_schema, ".udf.resources")["default"] == {"cpu": 1.0, "gpu": 0.0}
    assert at(spec_schema, ".udf.resources.gpu")["default"] == 0.0
    assert at(spec_schema, ".cluster.workerGroups")["default"] == [
        {"name": "cpu", "type": "cpu", "replicas": 1, "minReplicas": 0, "maxReplicas": 1, "cpu": "1", "memory": "2Gi", "gpu": 0}
    ]
    assert at(spec_schema, ".cluster.workerGroups.[].type")["default"] == "cpu"
    # Empty collections and all-optional objects get no default: noise in every stored object.
    assert "default" not in at(spec_schema, ".cluster.tolerations")
    assert "default" not in at(spec_schema, ".auth")


def test_defaults_applied_recursively_give_what_pydantic_gives(spec_schema):
    # What the API server stores for a minimal manifest must read back as pydantic's defaults.
    def apply(node: dict, value: Any) -> Any:
        if isinstance(value, dict) and "properties" in node:
            for name, prop in node["properties"].items():
                if name not in value and "default" in prop:
                    value[name] = yaml.safe_load(yaml.safe_dump(prop["default"]))
                if name in value:
                    value[name] = apply(prop, value[name])
        if isinstance(value, list) and "items" in node:
            value = [apply(node["items"], v) for v in value]
        return value

    raw = {"table": {"uri": "/db", "name": "t"}, "column": "c", "udf": {"function": "m:f", "inputColumns": ["a"], "outputType": "int32"}, "cluster": {}}
    def drop_empty(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop_empty(v) for k, v in value.items() if v not in ({}, [])}
        return [drop_empty(v) for v in value] if isinstance(value, list) else value

    served = apply(spec_schema, yaml.safe_load(yaml.safe_dump(raw)))
    assert drop_empty(served) == drop_empty(BackfillSpec.model_validate(raw).to_wire())


def test_status_has_no_defaults(schema):
    assert not [p for p, node in nodes(schema["properties"]["status"]) if "default" in node]


def test_list_maps_are_keyed(schema, spec_schema):
    groups = at(spec_schema, ".cluster.workerGroups")
    assert (groups["x-kubernetes-list-type"], groups["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    conditions = at(schema, ".status.conditions")
    assert (conditions["x-kubernetes-list-type"], conditions["x-kubernetes-list-map-keys"]) == ("map", ["type"])
    # A list-map key must be required (or defaulted) in its items.
    assert "name" in groups["items"]["required"] and "type" in conditions["items"]["required"]


def test_free_form_fields_are_preserved_not_pruned(spec_schema):
    assert at(spec_schema, ".udf.initArgs")["x-kubernetes-preserve-unknown-fields"] is True
    for field in ("env", "volumes", "volumeMounts"):
        node = at(spec_schema, f".cluster.{field}")
        assert node["items"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        assert "x-kubernetes-preserve-unknown-fields" not in node


def test_string_maps_have_string_values(spec_schema):
    for path in (".table.storageOptions", ".cluster.nodeSelector", ".cluster.labels", ".runtimeEnv.envVars"):
        assert at(spec_schema, path)["additionalProperties"] == {"type": "string"}, path


def test_enums_bounds_and_patterns_survive(spec_schema):
    assert at(spec_schema, ".mode")["enum"] == ["Missing", "All"]
    assert at(spec_schema, ".cluster.workerGroups.[].type")["enum"] == ["cpu", "gpu"]
    assert at(spec_schema, ".udf.batchSize")["minimum"] == 1
    assert at(spec_schema, ".udf.batchSize")["maximum"] == 1_048_576
    assert at(spec_schema, ".cluster.workerGroups")["maxItems"] == 16
    assert at(spec_schema, ".table.storageOptions")["maxProperties"] == 64
    assert at(spec_schema, ".column")["pattern"] == "^[A-Za-z_][A-Za-z0-9_]*$"


def rules(node: dict) -> dict[str, dict]:
    return {r["rule"]: r for r in node.get("x-kubernetes-validations", [])}


def test_cel_rules_sit_on_the_right_objects(spec_schema):
    spec_rules = rules(spec_schema)
    assert "has(self.cluster) != has(self.existingCluster)" in spec_rules
    assert spec_rules["self.column == oldSelf.column"]["fieldPath"] == ".column"
    assert any("self.cluster.workerGroups.exists(g, g.type == 'gpu')" in r for r in spec_rules)

    group_rules = rules(at(spec_schema, ".cluster.workerGroups.[]"))
    assert set(group_rules) == {
        "self.minReplicas <= self.replicas",
        "self.replicas <= self.maxReplicas",
        "(self.type == 'gpu') == (self.gpu > 0)",
    }
    table_rules = rules(at(spec_schema, ".table"))
    assert {"self.uri == oldSelf.uri", "self.name == oldSelf.name"} <= set(table_rules)
    assert any("aws_secret_access_key" in r and "lowerAscii" in r for r in table_rules)


def test_udf_stays_mutable(spec_schema):
    # A new udf.version on a finished backfill must start a new run, not be refused.
    assert not [p for p, node in nodes(at(spec_schema, ".udf")) for r in rules(node) if "oldSelf" in r]
    assert not [r for r in rules(spec_schema) if "oldSelf.udf" in r]


def test_committed_yaml_has_no_anchors():
    text = (REPO / "crds" / crd.CRD_FILE).read_text()
    assert "&id" not in text and "*id" not in text
    assert yaml.safe_load(text) == crd.build_crd()
