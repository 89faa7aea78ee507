"""Failures mid-run: a killed driver resumes from checkpoints, a killed worker is retried."""
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import lance
import pytest
import yaml

from conftest import make_tagged_table, spec_for
from geneva_operator.engine import run_backfill

pytestmark = pytest.mark.engine

FRAGS = [500, 300, 500, 700, 500, 400, 500, 600]


def tagged_table(db):
    make_tagged_table(db, FRAGS, null_every=9)


def logged(log: Path) -> Counter:
    """rows the udf saw, per fragment tag"""
    seen = Counter()
    if log.exists():
        for line in log.read_text().split("\n"):
            if line:
                tag, n = line.split()
                seen[int(tag)] += int(n)
    return seen


def kill_after_commits(manifest, ray_address, dataset, commits: int) -> None:
    """Run `geneva-backfill run -f manifest` and SIGKILL it right after `commits` commits are
    visible in `dataset()` (the table, opened anew), then give Ray time to reap its tasks."""
    v0 = dataset().version
    proc = subprocess.Popen([sys.executable, "-m", "geneva_operator.engine.cli", "run", "-f", str(manifest),
                             "--ray-address", ray_address, "--progress", "log"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while dataset().version < v0 + commits:
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "no commit became visible"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    time.sleep(3)  # let Ray reap the dead driver's tasks


def assert_exact(db):
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["id", "x", "y"]).sort_by("id").to_pydict()
    assert t["y"] == [None if x is None else 2 * x for x in t["x"]]


@pytest.mark.parametrize("mode", ["Missing", "All"])
def test_a_driver_killed_mid_run_resumes_without_recomputing_committed_fragments(db, tmp_path, ray_session, mode):
    tagged_table(db)
    log = tmp_path / "calls.log"
    spec = spec_for(db, "t", "y", "sample_udfs:Logged", ["x", "frag"], "int64", commitEvery=1, concurrency=1, mode=mode,
                    udf={"initArgs": {"log": str(log), "delay": 0.4}, "batchSize": 250})
    if mode == "All":  # every row already computed: only the run marker tells this run's work apart
        run_backfill({**spec, "udf": {**spec["udf"], "initArgs": {"log": str(tmp_path / "pre.log")}}})
    path = tmp_path / "backfill.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "geneva.lancedb.com/v1alpha1", "kind": "GenevaBackfill",
                                    "metadata": {"name": "resume"}, "spec": spec}))
    kill_after_commits(path, ray_session, lambda: lance.dataset(f"{db}/t.lance"), 2)
    table = lance.dataset(f"{db}/t.lance").to_table(columns=["frag", "x", "y"]).to_pydict()
    committed = {f for f, x, y in zip(table["frag"], table["x"], table["y"]) if x is not None and y == 2 * x}
    if mode == "All":
        committed = set()  # rows were already right before; what counts is what the first run's log saw
    first = logged(log)
    assert first and sum(first.values()) < sum(FRAGS)

    size_before = log.stat().st_size
    result = run_backfill(spec)
    second = Counter()
    for line in log.read_text()[size_before:].split("\n"):
        if line:
            tag, n = line.split()
            second[int(tag)] += int(n)
    assert_exact(db)
    done_in_first = {f for f, n in first.items() if n == FRAGS[f]}
    # nothing the first run finished is computed again (finished = committed, or checkpointed but not yet committed)
    assert not (set(second) & done_in_first), (first, second)
    assert set(second) | done_in_first == set(range(len(FRAGS)))
    assert committed <= done_in_first
    assert result.rows_computed == sum(second.values()) < sum(FRAGS)
    # the finished run is over: Missing has nothing left, a new All run recomputes every row
    again = run_backfill(spec)
    assert again.rows_computed == (0 if mode == "Missing" else sum(FRAGS))


def test_a_worker_killed_mid_task_is_retried_and_the_result_is_exact(db, tmp_path, ray_session):
    tagged_table(db)
    marker = tmp_path / "crashed"
    r = run_backfill(spec_for(db, "t", "y", "sample_udfs:CrashOnce", ["x"], "int64", udf={"initArgs": {"marker": str(marker)}}))
    assert marker.exists()  # a worker really died
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else 3 * x for x in t["x"]]
    assert r.rows_done == sum(FRAGS)


def test_a_failed_version_bump_leaves_whole_fragments_of_either_version_and_says_which(db, tmp_path, ray_session):
    import io

    from geneva_operator.api.job_contract import last_report
    from geneva_operator.engine import LogLineProgress, UdfError

    make_tagged_table(db, [500, 300, 500, 700], null_every=9)
    healed = tmp_path / "healed"
    v1 = "import pyarrow.compute as pc\ndef f(x, frag):\n    return pc.add(x, 1)\n"
    v2 = ("import os, pyarrow.compute as pc\ndef f(x, frag):\n"
          f"    if 2 in frag.to_pylist() and not os.path.exists({str(healed)!r}):\n"
          "        raise RuntimeError('fragment 2 is not ready')\n"
          "    return pc.multiply(x, -1)\n")
    spec = spec_for(db, "t", "y", "bump:f", ["x", "frag"], "int64", commitEvery=1, concurrency=1)
    run_backfill({**spec, "udf": {**spec["udf"], "source": v1, "version": "1"}})
    bump = {**spec, "udf": {**spec["udf"], "source": v2, "version": "2"}}
    log = io.StringIO()
    with pytest.raises(UdfError) as e:
        run_backfill(bump, progress=LogLineProgress(log, min_interval=0))
    # One slot takes the fragments largest first (3, 0, 2, 1): 3 and 0 are committed with version 2.
    assert "2 of 4 fragments (1200 of 2000 rows) were committed: the rows this run selected in them hold " \
           "udf.version '2', every other row what it held before the run" in str(e.value)
    last = last_report(log.getvalue())
    assert (last.fragments_committed, last.rows_committed, last.udf_version) == (2, 1200, "2")
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["frag", "x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else (-x if f in (0, 3) else x + 1) for f, x in zip(t["frag"], t["x"])]
    healed.touch()
    assert run_backfill(bump).rows_computed == 800
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", "y"]).to_pydict()
    assert t["y"] == [None if x is None else -x for x in t["x"]]
