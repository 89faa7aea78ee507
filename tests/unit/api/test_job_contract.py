"""The contract between the operator and its Ray job: the work the job is given, the reports
it prints back, the Ray job states, and how a failed job's log tells an image without the engine.

Operator and job may be of different releases (an existingCluster runs the user's image), so
the reports are specified from both sides: what this release prints, what it reads from an
older or a newer job, and what it makes of lines that are no report at all."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from geneva_operator.api.job_contract import (
    ENTRYPOINT_MODULE,
    BackfillWork,
    ProgressReport,
    RayJobState,
    ResultReport,
    decode_work,
    encode_work,
    entrypoint,
    last_report,
    missing_engine_module,
    parse_report,
    work_from_spec,
)
from geneva_operator.api.models import BackfillSpec

SPEC = {
    "table": {"uri": "s3://bucket/db", "name": "captions", "storageOptions": {"region": "us-east-1"}},
    "column": "caption_len",
    "udf": {"function": "examples.udfs.text:length", "inputColumns": ["caption"], "outputType": "int32", "version": "3"},
    "where": "lang = 'it''s'",
    "mode": "All",
    "commitEvery": 4,
    "concurrency": 8,
    "cluster": {"workerGroups": [{"name": "cpu", "type": "cpu", "replicas": 2, "maxReplicas": 4}]},
    "auth": {"tokenSecretRef": {"name": "ray-token"}},
    "backoffLimit": 5,
    "suspend": False,
}


def spec(**changes) -> BackfillSpec:
    return BackfillSpec.model_validate({**SPEC, **changes})


def b64(doc: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


# ---------------------------------------------------------------- the work


def test_the_work_is_what_the_engine_reads_of_the_spec_and_nothing_of_where_or_when_it_runs():
    wire = work_from_spec(spec()).to_wire()
    assert sorted(wire) == ["column", "commitEvery", "concurrency", "mode", "table", "udf", "where"]
    assert wire == {key: value for key, value in spec().to_wire().items() if key in wire}


def test_the_work_travels_in_the_entrypoint_unharmed_by_any_shell():
    work = work_from_spec(spec())
    command = entrypoint(work, python="/opt/python")
    program, flag, module, argument = command.split(" ")
    assert (program, flag, module) == ("/opt/python", "-m", ENTRYPOINT_MODULE)
    assert set(argument) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_work(argument) == work == decode_work(encode_work(work))


def test_the_work_keeps_the_specs_rules():
    work = work_from_spec(spec()).to_wire()
    for bad in ({"column": "_rowid"}, {"column": "a b"}, {"commitEvery": 0}, {"concurrency": 0}, {"mode": "Some"}):
        with pytest.raises(ValidationError):
            BackfillWork.model_validate({**work, **bad})
    # and its defaults
    minimal = {k: SPEC[k] for k in ("table", "column", "udf")}
    assert BackfillWork.model_validate(minimal) == work_from_spec(BackfillSpec.model_validate({**minimal, "cluster": {}}))


def test_an_entrypoint_of_an_older_operator_carrying_the_whole_spec_gives_the_same_work():
    assert decode_work(b64(spec().to_wire())) == work_from_spec(spec())


def test_an_entrypoint_with_a_field_this_engine_does_not_know_is_refused_not_half_done():
    with pytest.raises(ValidationError, match="sampleRows"):
        decode_work(b64({**work_from_spec(spec()).to_wire(), "sampleRows": 100}))


def test_the_contract_imports_neither_ray_nor_arrow():
    # The operator image has neither.
    code = ("import sys, geneva_operator.api.job_contract\n"
            "print(sorted(m for m in ('ray', 'pyarrow', 'lance', 'lancedb') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------- the reports

PROGRESS = ProgressReport(fragments_done=2, fragments_total=3, rows_done=200, rows_total=300, fragments_committed=1,
                          rows_committed=100, udf_version="1", rows_per_second=1234.5, table_version=7)
RESULT = ResultReport(fragments_done=3, fragments_total=3, rows_done=300, rows_total=300, rows_per_second=1500.0,
                      table_version=8, committed_version=8, rows_computed=300, rows_discarded=0, commits=2, seconds=0.2)
# As the engine printed them before the reports were models: operators of that release read
# this release's lines, so the lines are the same bytes.
PROGRESS_LINE = ('GENEVA_PROGRESS {"fragmentsCommitted":1,"fragmentsDone":2,"fragmentsTotal":3,"rowsCommitted":100,'
                 '"rowsDone":200,"rowsPerSecond":1234.5,"rowsTotal":300,"tableVersion":7,"udfVersion":"1"}')
RESULT_LINE = ('GENEVA_RESULT {"commits":2,"committedVersion":8,"fragmentsDone":3,"fragmentsTotal":3,"rowsComputed":300,'
               '"rowsDiscarded":0,"rowsDone":300,"rowsPerSecond":1500.0,"rowsTotal":300,"seconds":0.2,"tableVersion":8}')


def test_reports_print_as_the_lines_operators_have_always_read():
    assert PROGRESS.line() == PROGRESS_LINE and RESULT.line() == RESULT_LINE


@pytest.mark.parametrize("report", [PROGRESS, RESULT, ProgressReport(), ResultReport(committed_version=0)])
def test_a_printed_report_reads_back_as_itself_and_its_kind(report):
    back = parse_report(report.line())
    assert back == report and type(back) is type(report)


def test_a_report_is_found_behind_whatever_ray_prefixes_to_the_line():
    assert parse_report("(raylet) 2026-03-01 12:00:01 " + PROGRESS_LINE) == PROGRESS


def test_keys_of_a_newer_job_are_ignored():
    newer = json.loads(PROGRESS_LINE.removeprefix("GENEVA_PROGRESS ")) | {"bytesWritten": 10, "phase": {"x": 1}}
    assert parse_report("GENEVA_PROGRESS " + json.dumps(newer)) == PROGRESS


def test_keys_an_older_job_did_not_print_take_their_defaults():
    # Jobs before the committed counts printed the four counts alone; the first ones not even fragments.
    old = parse_report('GENEVA_PROGRESS {"rowsDone": 10, "rowsTotal": 100}')
    assert old == ProgressReport(rows_done=10, rows_total=100)
    assert (old.fragments_done, old.fragments_committed, old.rows_committed) == (0, None, None)
    assert parse_report('GENEVA_RESULT {"rowsDone": 100, "rowsTotal": 100, "committedVersion": 4}') == \
        ResultReport(rows_done=100, rows_total=100, committed_version=4)


@pytest.mark.parametrize("line", [
    "",
    "INFO worker.py:1 -- Connecting to existing Ray cluster",
    '{"rowsDone": 1}',  # no prefix
    "GENEVA_PROGRESS ",
    "GENEVA_PROGRESS {truncated",
    "GENEVA_PROGRESS [1, 2]",
    'GENEVA_PROGRESS "text"',
    'GENEVA_PROGRESS {"rowsDone": "many"}',
    'GENEVA_RESULT {"committedVersion": {"v": 1}}',
])
def test_a_line_that_holds_no_report_is_none(line):
    assert parse_report(line) is None


def test_the_last_report_of_a_log_is_its_newest_one_whatever_follows():
    log = "\n".join(["start", PROGRESS_LINE, "GENEVA_PROGRESS {cut", RESULT_LINE, "GENEVA_RESULT [", "bye"])
    assert last_report(log) == RESULT
    assert last_report(log.replace(RESULT_LINE, "noise")) == PROGRESS
    assert last_report("no reports\nat all") is None and last_report("") is None


# ---------------------------------------------------------------- Ray job states


def test_ray_job_states_are_rays_names_and_three_of_them_are_final():
    assert [s.value for s in RayJobState] == ["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
    assert {s for s in RayJobState if s.terminal} == {RayJobState.STOPPED, RayJobState.SUCCEEDED, RayJobState.FAILED}


def test_a_status_string_names_its_state_and_one_unknown_here_names_none():
    assert RayJobState.of("RUNNING") is RayJobState.RUNNING and RayJobState.of("succeeded") is RayJobState.SUCCEEDED
    assert RayJobState.of("RESCHEDULING") is None and RayJobState.of("") is None


# ---------------------------------------------------------------- an image without the engine

# `python -m geneva_operator.engine.job ...` in an image without the package (rayproject/ray):
NO_PACKAGE = ("/home/ray/anaconda3/bin/python: Error while finding module specification for "
              f"'{ENTRYPOINT_MODULE}' (ModuleNotFoundError: No module named 'geneva_operator')\n")
# Ray's JobInfo.message of that job, which quotes the log's end.
RAY_MESSAGE = "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n" + NO_PACKAGE
NO_LANCEDB = """Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/home/ray/anaconda3/lib/python3.11/site-packages/geneva_operator/engine/job.py", line 25, in main
    from .runner import run_backfill
  File "/home/ray/anaconda3/lib/python3.11/site-packages/geneva_operator/engine/runner.py", line 9, in <module>
    import lancedb
ModuleNotFoundError: No module named 'lancedb'
"""
OLD_LANCE = "ImportError: cannot import name 'LanceFragment' from 'lance.fragment' (/usr/lib/python3/site-packages/lance/fragment.py)\n"


@pytest.mark.parametrize("log, missing", [
    (NO_PACKAGE, "No module named 'geneva_operator'"),
    (RAY_MESSAGE, "No module named 'geneva_operator'"),
    (NO_LANCEDB, "No module named 'lancedb'"),
    ("2026-03-01 12:00:01 INFO worker.py:1 -- Connecting to existing Ray cluster\n" + NO_LANCEDB, "No module named 'lancedb'"),
    ("ModuleNotFoundError: No module named 'pyarrow.compute'\n", "No module named 'pyarrow.compute'"),
    (OLD_LANCE, "cannot import name 'LanceFragment' from 'lance.fragment'"),
])
def test_a_missing_or_stale_engine_module_is_recognised(log, missing):
    assert missing_engine_module(log) == missing


@pytest.mark.parametrize("log", [
    None,
    "",
    # The user's module is not in the image: the engine says so itself, naming the field (no retry helps
    # either, but the fix is the UDF's packaging, not the engine).
    "error: spec.udf.function: cannot import module 'my_udfs': No module named 'my_udfs' (it must be importable ...)\n",
    "error: spec.udf.function: cannot import module 'my_udfs': No module named 'lancedb' (it must be importable ...)\n",
    # A UDF raising about a module of its own.
    "Traceback (most recent call last):\n  File \"udf.py\", line 3\nModuleNotFoundError: No module named 'transformers'\n",
    "ValueError: boom\n",
])
def test_other_failures_are_not_blamed_on_the_image(log):
    assert missing_engine_module(log) is None
