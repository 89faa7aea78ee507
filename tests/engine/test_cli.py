"""The commands: `geneva-backfill validate|run` and the Ray job entrypoint."""
import os
import subprocess
import sys

import lance
import pyarrow as pa
import pytest
import yaml

from conftest import make_table, spec_for
from geneva_operator.api.job_contract import ResultReport, decode_work, encode_work, last_report, parse_report
from geneva_operator.engine.cli import main
from geneva_operator.engine.manifest import parse_spec

pytestmark = pytest.mark.engine


@pytest.fixture
def table(db):
    make_table(db, "t", [pa.table({"id": pa.array(range(s, e), pa.int64()), "s": [f"r{i}" for i in range(s, e)]})
                         for s, e in [(0, 300), (300, 320)]])
    return db


def write(tmp_path, spec, manifest=True):
    doc = {"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill", "metadata": {"name": "x"},
           "spec": {**spec, "cluster": {}}} if manifest else spec
    p = tmp_path / "backfill.yaml"
    p.write_text(yaml.safe_dump(doc))
    return str(p)


def test_validate_accepts_a_good_manifest_after_a_trial_call(table, tmp_path, capsys):
    f = write(tmp_path, spec_for(table, "t", "n", "sample_udfs:length", ["s"], "int32"))
    assert main(["validate", "-f", f]) == 0
    out = capsys.readouterr().out
    assert "column 'n' will be created as int32" in out and "valid output for 8 rows" in out
    assert "n" not in lance.dataset(f"{table}/t.lance").schema.names


@pytest.mark.parametrize("over,message", [
    ({"udf": {"inputColumns": ["nope"]}}, "spec.udf.inputColumns: column 'nope' is not in table 't'"),
    ({"udf": {"function": "sample_udfs:wrong_type"}}, "spec.udf.outputType: udf sample_udfs:wrong_type returned type string"),
    ({"udf": {"outputType": "list<>"}}, "spec.udf.outputType"),
    ({"where": "s = "}, "spec.where: invalid filter"),
])
def test_validate_rejects_bad_specs_naming_the_field(table, tmp_path, capsys, over, message):
    spec = spec_for(table, "t", "n", "sample_udfs:length", ["s"], "int32")
    for k, v in over.items():
        spec[k] = {**spec[k], **v} if isinstance(v, dict) else v
    assert main(["validate", "-f", write(tmp_path, spec, manifest=False)]) != 0
    assert message in capsys.readouterr().err


def test_the_job_entrypoint_prints_progress_and_a_result_the_operator_parses(table, ray_session):
    work = parse_spec(spec_for(table, "t", "n", "sample_udfs:length", ["s"], "int32", commitEvery=1))
    assert decode_work(encode_work(work)) == work
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    proc = subprocess.run([sys.executable, "-m", "geneva_operator.engine.job", encode_work(work)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reports = [parse_report(l) for l in proc.stdout.splitlines() if parse_report(l)]
    assert reports[0].rows_total == 320 and reports[0].fragments_total == 2
    result = last_report(proc.stdout)
    assert isinstance(result, ResultReport)
    assert result.committed_version == lance.dataset(f"{table}/t.lance").version == result.table_version
    assert (result.rows_done, result.fragments_done) == (320, 2)


def test_the_job_entrypoint_fails_with_the_field_and_a_nonzero_exit(table, ray_session):
    work = parse_spec(spec_for(table, "t", "n", "sample_udfs:raises", ["s"], "int32"))
    env = {**os.environ, "RAY_ADDRESS": ray_session}
    proc = subprocess.run([sys.executable, "-m", "geneva_operator.engine.job", encode_work(work)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1
    assert "error: spec.udf.function: udf sample_udfs:raises raised RuntimeError: model exploded" in proc.stderr
    assert "GENEVA_RESULT" not in proc.stdout and "n" not in lance.dataset(f"{table}/t.lance").schema.names
