"""Checkpoints after success: folded into one compact state, records and orphan files removed,
and a driver killed anywhere in the fold still leaves a table and checkpoints the next run
handles exactly."""
import os
import threading
import time

import lance
import numpy as np
import pytest

from conftest import make_tagged_table, spec_for
from geneva_operator.engine import run_backfill
from geneva_operator.engine.checkpoint import CheckpointStore, FragmentRecord, decode_state, encode_state, pack_mask
from geneva_operator.engine.table import TableLocation

pytestmark = pytest.mark.engine

FRAGS = [400, 250, 600, 300, 500]


def table(db):
    return make_tagged_table(db, FRAGS, null_every=11)


def ckpt_dir(db, column):
    return f"{db}/t.lance/_geneva/{column}"


def files_under(path):
    return sorted(os.path.relpath(os.path.join(d, f), path) for d, _, fs in os.walk(path) for f in fs)


def exact(db, column="y", factor=2):
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x", column]).to_pydict()
    return t[column] == [None if x is None else factor * x for x in t["x"]]


def test_after_success_only_the_compact_state_remains_and_a_noop_rerun_writes_nothing(db, tmp_path, ray_session):
    table(db)
    spec = spec_for(db, "t", "y", "sample_udfs:Logged", ["x", "frag"], "int64", commitEvery=2,
                    udf={"initArgs": {"log": str(tmp_path / "calls.log")}})
    r = run_backfill(spec)
    assert r.rows_computed == sum(FRAGS) and exact(db)
    assert files_under(ckpt_dir(db, "y")) == ["state.arrow"]
    state = CheckpointStore(TableLocation(f"{db}/t.lance"), "y").read_state()
    assert sorted(state) == list(range(len(FRAGS)))
    assert all(e.done_mask().all() for e in state.values())  # every row, computed by this udf version
    stat = os.stat(f"{ckpt_dir(db, 'y')}/state.arrow").st_mtime_ns
    v = lance.dataset(f"{db}/t.lance").version
    again = run_backfill(spec)
    assert (again.rows_computed, again.commits) == (0, 0)
    assert lance.dataset(f"{db}/t.lance").version == v
    assert os.stat(f"{ckpt_dir(db, 'y')}/state.arrow").st_mtime_ns == stat  # nothing rewritten either


class Killed(BaseException):
    """Stands for SIGKILL of the driver: not an Exception, so nothing on the way catches it."""


@pytest.mark.parametrize("mode", ["Missing", "All"])
@pytest.mark.parametrize("kill_at", ["state write", "third record delete"])
def test_a_driver_killed_during_the_fold_leaves_checkpoints_the_next_run_finishes(db, tmp_path, ray_session,
                                                                                  monkeypatch, mode, kill_at):
    table(db)
    log = tmp_path / "calls.log"
    spec = spec_for(db, "t", "y", "sample_udfs:Logged", ["x", "frag"], "int64", mode=mode, commitEvery=2,
                    udf={"initArgs": {"log": str(log)}})
    if kill_at == "state write":
        def dying(self, entries):
            raise Killed()
        monkeypatch.setattr(CheckpointStore, "write_state", dying)
    else:
        deletes = []
        orig = CheckpointStore.delete

        def dying(self, rel):
            deletes.append(rel)
            if len(deletes) == 3:
                raise Killed()
            return orig(self, rel)
        monkeypatch.setattr(CheckpointStore, "delete", dying)
    with pytest.raises(Killed):
        run_backfill(spec)
    monkeypatch.undo()
    assert exact(db)  # every fragment was committed before the fold started
    left = files_under(ckpt_dir(db, "y"))
    assert ("state.arrow" in left) == (kill_at != "state write")
    assert len([f for f in left if f.startswith("pending/")]) == (len(FRAGS) if kill_at == "state write" else len(FRAGS) - 2)

    v = lance.dataset(f"{db}/t.lance").version
    size = log.stat().st_size
    # The retry of the killed job: nothing to compute (in mode All too: it is the same run,
    # whose work was all committed), nothing to commit, and the fold is finished.
    r = run_backfill(spec)
    assert (r.rows_computed, r.commits) == (0, 0) and log.stat().st_size == size
    assert lance.dataset(f"{db}/t.lance").version == v
    assert files_under(ckpt_dir(db, "y")) == ["state.arrow"]
    assert exact(db)
    # and the state it left still drives mode Missing (nothing to do) vs a new All run (everything)
    assert run_backfill({**spec, "mode": "Missing"}).rows_computed == 0
    assert run_backfill({**spec, "mode": "All"}).rows_computed == sum(FRAGS)


def referenced_files(uri):
    ds = lance.dataset(uri)
    out = set()
    for v in ds.versions():
        for f in lance.dataset(uri, version=v["version"]).get_fragments():
            out |= {df.path for df in f.metadata.files}
    return out


def test_outputs_made_stale_by_another_writer_are_recomputed_and_their_files_deleted(db, tmp_path, ray_session):
    total = table(db)
    # x2 is itself a computed column; rewriting it under a running backfill of y (which reads
    # it) makes every output y computed so far stale.
    x2 = spec_for(db, "t", "x2", "sample_udfs:plus_one", ["x"], "int64")
    run_backfill(x2)
    log = tmp_path / "calls.log"
    spec = spec_for(db, "t", "y", "sample_udfs:Logged", ["x2", "frag"], "int64", commitEvery=100, concurrency=1,
                    udf={"initArgs": {"log": str(log), "delay": 0.2}, "batchSize": 200})
    box = {}
    th = threading.Thread(target=lambda: box.update(result=run_backfill(spec)))
    th.start()
    deadline = time.monotonic() + 120
    while not os.path.isdir(f"{ckpt_dir(db, 'y')}/pending") or not os.listdir(f"{ckpt_dir(db, 'y')}/pending"):
        assert time.monotonic() < deadline and th.is_alive()
        time.sleep(0.02)
    run_backfill({**x2, "mode": "All", "udf": {**x2["udf"], "version": "2"}})  # new x2 files, same values
    th.join(180)
    r = box["result"]
    assert r.rows_computed > total  # the stale fragments were computed again, on the new inputs
    t = lance.dataset(f"{db}/t.lance").to_table(columns=["x2", "y"]).to_pydict()
    assert t["y"] == [None if v is None else 2 * v for v in t["x2"]]
    # no data file is left that no version of the table references: the stale outputs were deleted
    on_disk = set(os.listdir(f"{db}/t.lance/data"))
    assert on_disk <= referenced_files(f"{db}/t.lance"), on_disk - referenced_files(f"{db}/t.lance")
    assert files_under(ckpt_dir(db, "y")) == ["state.arrow"]


@pytest.mark.parametrize("entries", [3, 1500])  # below and above the size from which the state is compressed
def test_the_compact_state_reads_back_exactly_compressed_or_not(entries):
    recs = [FragmentRecord(i, "key", f"100:in{i}.lance", 100, None, f"out{i}.lance", b"",
                           pack_mask(np.arange(100) % (i + 2) == 0), run_id="run") for i in range(entries)]
    got = decode_state(encode_state(recs))
    assert [(r.fragment_id, r.output_file, r.done_mask().tolist()) for r in got.values()] == \
           [(r.fragment_id, r.output_file, r.done_mask().tolist()) for r in recs]
