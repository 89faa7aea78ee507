"""The README's GenevaBackfill reference is generated from the models and cannot drift."""
from pathlib import Path

import pytest

from geneva_operator.api import reference

ROOT = Path(__file__).resolve().parents[3]


def test_the_readme_reference_matches_the_models():
    readme = (ROOT / "README.md").read_text()
    assert reference.updated(readme) == readme, "README reference is stale: run `make crds`"


def test_every_spec_field_of_the_crd_has_a_row():
    table = reference.render_table()
    for path in ("spec.table.uri", "spec.udf.outputType", "spec.cluster.workerGroups[].maxReplicas", "spec.cleanup.policy"):
        assert f"`{path}`" in table


def test_required_fields_are_marked_and_defaults_shown():
    rows = {line.split("|")[1].strip(): line for line in reference.render_table().splitlines()[2:]}
    assert "**Required.**" in rows["`spec.column`"]
    assert "`16`" in rows["`spec.commitEvery`"]


def test_a_readme_without_markers_is_an_error_not_a_silent_pass():
    with pytest.raises(ValueError, match="markers"):
        reference.updated("# no markers here\n")
