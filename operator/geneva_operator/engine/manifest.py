"""Reading the work of a backfill from a GenevaBackfill manifest or a bare spec (YAML/JSON)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import yaml
from pydantic import ValidationError

from ..api.job_contract import BackfillWork, work_from_spec
from ..api.models import KIND, BackfillSpec
from .errors import SpecError


def load_spec(path: Union[str, Path]) -> BackfillWork:
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


def parse_spec(doc: dict) -> BackfillWork:
    """The work of a spec. A whole spec (it says where the job runs: `cluster` or
    `existingCluster`) is checked as the API server and the operator would; a bare one, for a
    local run, holds the work alone."""
    whole = isinstance(doc, dict) and any(k in doc for k in ("cluster", "existingCluster", "existing_cluster"))
    try:
        return work_from_spec(BackfillSpec.model_validate(doc)) if whole else BackfillWork.model_validate(doc)
    except ValidationError as e:
        msgs = [f"spec.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()]
        first = e.errors()[0]
        raise SpecError(".".join(str(p) for p in first["loc"]) or None,
                        first["msg"] + ("" if len(msgs) == 1 else "\n  " + "\n  ".join(msgs[1:]))) from None
