"""The GenevaBackfill CustomResourceDefinition, generated from the pydantic models.

    python -m geneva_operator.api.crd write   # crds/ and the chart's copy, from the repository root
    python -m geneva_operator.api.crd check   # exits 1 when the committed files drift from the models

The models stay the one source of truth: pydantic's JSON schema is rewritten into a
*structural* schema (what the API server needs for pruning, defaulting and CEL), and the
cross-field rules the models declare (`cel_rules`) travel along as x-kubernetes-validations.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault

from .models import GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION, BackfillSpec, BackfillStatus

CRD_NAME = f"{PLURAL}.{GROUP}"
CRD_FILE = f"{CRD_NAME}.yaml"
# Helm installs the chart's crds/ before its templates; the two copies must stay identical.
OUTPUT_DIRS = ("crds", "charts/geneva-operator/crds")
HEADER = "# Generated from operator/geneva_operator/api/models.py by `python -m geneva_operator.api.crd write`. Do not edit.\n"


class _CrdSchemaGenerator(GenerateJsonSchema):
    """pydantic leaves default_factory defaults out of the schema; the API server should apply them."""

    def get_default_value(self, schema: Any) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        return _factory_default(factory())


def _factory_default(value: Any) -> Any:
    # Written out in full: the API server validates a default (CEL rules included) as it stands,
    # without first applying the defaults nested inside it. Empty lists and maps are left out,
    # as defaults and inside them: they would only add noise to every stored object.
    if isinstance(value, BaseModel):
        value = _drop_empty(value.to_wire())
    elif isinstance(value, list):
        value = [_drop_empty(v.to_wire()) if isinstance(v, BaseModel) else v for v in value]
    return NoDefault if value in ({}, []) else value


def _drop_empty(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_empty(v) for k, v in value.items() if v not in ({}, [])}
    return value


def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline `$ref` and collapse `anyOf: [X, null]` (Optional) to X; the field's own keys win."""
    while True:
        if "$ref" in node:
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **siblings}
        elif "anyOf" in node:
            options = [o for o in node["anyOf"] if o != {"type": "null"}]
            if len(options) != 1:
                raise ValueError(f"a structural schema cannot express anyOf {node['anyOf']}")
            siblings = {k: v for k, v in node.items() if k != "anyOf"}
            node = {**options[0], **siblings}
        else:
            return node


# Schema keys in the order a reader wants them (pydantic's order depends on how a field was declared).
_KEY_ORDER = [
    "type", "description", "default", "enum", "format", "pattern", "minLength", "maxLength", "minimum", "maximum",
    "minItems", "maxItems", "maxProperties", "nullable", "required", "properties", "additionalProperties", "items",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {k: i for i, k in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _deref(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "title" or (key == "default" and value is None):
            continue
        if key == "additionalProperties":
            if value is True:  # dict[str, Any]: kept as is, not pruned
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out[key] = _structural(value, defs)
            # False is what pruning does anyway; structural schemas reject it next to properties.
            continue
        if key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs)
        else:
            out[key] = value
    if out.get("type") == "array" and out.pop("x-kubernetes-preserve-unknown-fields", False):
        # The models mark list[dict[str, Any]] fields; what must survive pruning is the items.
        out["items"] = _ordered({**out["items"], "x-kubernetes-preserve-unknown-fields": True})
    return _ordered(out)


def _without_defaults(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    return node


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema as a Kubernetes structural schema (camelCase, refs inlined)."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_CrdSchemaGenerator)
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)


def openapi_schema() -> dict[str, Any]:
    # The status belongs to the operator: no API-server defaults there, it writes what it means.
    status = _without_defaults(structural_schema(BackfillStatus))
    status = _ordered({**status, "description": "Observed state, written by the operator."})
    spec = structural_schema(BackfillSpec)
    spec = _ordered({**spec, "description": "What to compute: a column of a LanceDB table, by a Python function, on a Ray cluster."})
    return {
        "type": "object",
        "description": "GenevaBackfill computes (or recomputes) a column of a LanceDB table with a Python "
        "function, as a Ray job on a KubeRay cluster, resuming from checkpoints on retries.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "Versioned schema of this representation of an object."},
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "integer", "jsonPath": ".status.progress.percent", "description": "Percent of the rows done."},
    {"name": "Rows", "type": "string", "jsonPath": ".status.rows", "description": "Rows done/total."},
    {"name": "Cluster", "type": "string", "jsonPath": ".status.rayClusterName"},
    {"name": "Column", "type": "string", "jsonPath": ".spec.column", "priority": 1},
    {"name": "UDF-Version", "type": "string", "jsonPath": ".spec.udf.version", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of GenevaBackfill."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR, "shortNames": list(SHORT_NAMES)},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        # Inlined $refs share objects; anchors and aliases would make the YAML unreadable.
        return True


def render() -> str:
    return HEADER + yaml.dump(build_crd(), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def output_paths(root: Path) -> list[Path]:
    return [root / d / CRD_FILE for d in OUTPUT_DIRS]


def write(root: Path) -> list[Path]:
    text = render()
    for path in output_paths(root):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return output_paths(root)


def drifted(root: Path) -> list[Path]:
    """The generated files that are missing or differ from what the models produce."""
    text = render()
    return [p for p in output_paths(root) if not p.is_file() or p.read_text() != text]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geneva_operator.api.crd", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["write", "check", "print"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root (default: the current directory)")
    args = parser.parse_args(argv)
    if args.command == "print":
        sys.stdout.write(render())
        return 0
    if not (args.root / "operator" / "geneva_operator").is_dir():
        parser.error(f"{args.root} is not the repository root; run from it or pass --root")
    if args.command == "write":
        for path in write(args.root):
            print(f"wrote {path.relative_to(args.root)}")
        return 0
    stale = drifted(args.root)
    for path in stale:
        print(f"{path.relative_to(args.root)} is out of date: run `python -m geneva_operator.api.crd write`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
