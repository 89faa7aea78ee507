"""How the operator recognises, in a failed job's driver log, an image without the engine:
Python's own words, as Ray hands them back (the entrypoint's stderr, a traceback's end)."""
from __future__ import annotations

import pytest

from geneva_operator.api.job_contract import ENTRYPOINT_MODULE, missing_engine_module

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
