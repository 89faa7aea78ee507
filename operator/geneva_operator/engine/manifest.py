"""Reading a GenevaBackfill manifest or a bare spec from YAML/JSON."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import yaml
from pydantic import ValidationError

from ..api.models import KIND, BackfillSpec
from .errors import SpecError


def load_spec(path: Union[str, Path]) -> BackfillSpec:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise SpecError(None, f"cannot read {path}: {e}") from None
    except yaml.YAMLError as e:
        raise SpecError(None, f"{path} is not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise SpecError(None, f"{path} holds no mapping")
    if doc.get("kind") == KIND or "apiVersion" in doc:
        if doc.get("kind") != KIND:
            raise SpecError(None, f"{path} is a {doc.get('kind')!r}, not a {KIND}")
        doc = doc.get("spec") or {}
    return parse_spec(doc)


def parse_spec(doc: dict) -> BackfillSpec:
    """Validate a spec. The engine ignores where the job runs, so a bare spec for a local run
    may leave out `cluster`/`existingCluster` (the API requires exactly one of them)."""
    if isinstance(doc, dict) and "cluster" not in doc and "existingCluster" not in doc and "existing_cluster" not in doc:
        doc = {**doc, "cluster": {}}
    try:
        return BackfillSpec.model_validate(doc)
    except ValidationError as e:
        msgs = [f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        first = e.errors()[0]
        raise SpecError(".".join(str(p) for p in first["loc"]) or None,
                        first["msg"] + ("" if len(msgs) == 1 else "\n  " + "\n  ".join(msgs[1:]))) from None
