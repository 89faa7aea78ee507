"""The whole engine against a GCS emulator on loopback (fake-gcs-server), like S3 with moto.

Lance's object store speaks GCS's XML API (object PUTs in particular). fake-gcs-server's
published module does not serve XML PUTs: v1.56.1, built with `go install
github.com/fsouza/fake-gcs-server@v1.56.1`, answers Lance's first write with `400 Bad
Request: invalid uploadType` (upstream issue fsouza/fake-gcs-server#331, open). The branch
`support-xml-api` of PR #1164 (github.com/tustvold/fake-gcs-server, the emulator
object_store's own CI uses) adds them; it is built from source at a pinned commit and cached
next to the other Go-built test tools. Lance reaches it through a service-account file whose
`gcs_base_url` names the emulator (`disable_oauth`: no token exchange), given as the
`google_service_account` storage option: a path, not a secret, so the API accepts it.
"""
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import lance
import lancedb
import pyarrow as pa
import pytest

from geneva_operator.engine import SpecError, StorageError, run_backfill

pytestmark = pytest.mark.engine

REPO = "https://github.com/tustvold/fake-gcs-server"
COMMIT = "46f2f7232d7250f960df496ca60da81326196038"  # branch support-xml-api (PR fsouza/fake-gcs-server#1164)
BIN = Path.home() / ".cache" / "geneva-operator" / "bin" / f"fake-gcs-server-xml-{COMMIT[:7]}"


def emulator_binary() -> Path:
    if BIN.exists():
        return BIN
    with tempfile.TemporaryDirectory() as src:
        try:
            subprocess.run(["git", "clone", "--quiet", "--branch", "support-xml-api", REPO, src], check=True, timeout=300)
            subprocess.run(["git", "-C", src, "checkout", "--quiet", COMMIT], check=True)
            BIN.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["go", "build", "-o", str(BIN), "."], cwd=src, check=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.fail(f"cannot build fake-gcs-server from {REPO}@{COMMIT} (needs git access to GitHub and Go): {e}")
    return BIN


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(emulator_binary()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
                             "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-external-url", url,
                             "-log-level", "warn"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                req = urllib.request.Request(f"{url}/storage/v1/b", data=json.dumps({"name": "lake"}).encode(),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "fake-gcs-server did not start"
                time.sleep(0.1)
        key = tmp_path_factory.mktemp("gcs") / "service-account.json"
        key.write_text(json.dumps({"gcs_base_url": url, "disable_oauth": True, "client_email": "",
                                   "private_key": "", "private_key_id": ""}))
        yield url, {"google_service_account": str(key), "allow_http": "true"}
    finally:
        proc.terminate()
        proc.wait(10)


def objects(url, prefix):
    with urllib.request.urlopen(f"{url}/storage/v1/b/lake/o?prefix={prefix}") as r:
        return sorted(o["name"] for o in json.load(r).get("items", []))


def gcs_table(opts, name):
    uri = "gs://lake/db"
    t = lancedb.connect(uri, storage_options=opts).create_table(
        name, pa.table({"id": pa.array(range(0, 700), pa.int64()), "s": [None if i % 5 == 0 else "ab" * (i % 4) for i in range(700)]}))
    t.add(pa.table({"id": pa.array(range(700, 1000), pa.int64()), "s": ["xyz"] * 300}))
    spec = {"table": {"uri": uri, "name": name, "storageOptions": opts}, "column": "n",
            "udf": {"function": "sample_udfs:length", "inputColumns": ["s"], "outputType": "int32"}, "commitEvery": 1}
    return f"{uri}/{name}.lance", spec


def column(uri, opts, col="n"):
    got = lance.dataset(uri, storage_options=opts).to_table(columns=["s", col]).to_pydict()
    return got[col] == [None if s is None else len(s) for s in got["s"]]


def test_a_backfill_round_trips_through_gcs_and_leaves_only_its_state(gcs, ray_session):
    url, opts = gcs
    uri, spec = gcs_table(opts, "t")
    r = run_backfill(spec)
    assert column(uri, opts) and r.rows_done == 1000 and r.commits == 2
    assert r.committed_version == lance.dataset(uri, storage_options=opts).version
    assert objects(url, "db/t.lance/_geneva/n/") == ["db/t.lance/_geneva/n/state.arrow"]
    assert run_backfill(spec).commits == 0


def test_a_driver_dead_after_a_fragment_resumes_from_its_record_on_gcs(gcs, ray_session):
    from geneva_operator.engine import execute
    from geneva_operator.engine.manifest import parse_spec
    from geneva_operator.engine.plan import load_checkpoints, plan, run_identity
    from geneva_operator.engine.table import TableLocation
    from geneva_operator.engine.udf import udf_key

    url, opts = gcs
    uri, spec = gcs_table(opts, "r")
    parsed = parse_spec(spec)
    loc = TableLocation.from_ref(parsed.table)
    p = plan(parsed, loc, loc.open(), run_id="dead")
    ident = run_identity(parsed, udf_key(parsed.udf, "n"))
    ctx = execute.TaskContext(loc, p.read_version, "n", False, parsed.udf, p.key, "dead", ident)
    execute.compute_fragment(ctx, p.units[0])  # what a task did before its driver was killed: data file + record
    assert [r.run_id for r in load_checkpoints(loc, "n").records.values()] == ["dead"]
    r = run_backfill(spec)
    assert r.rows_computed == 300 and r.rows_done == 1000  # the 700-row fragment came from its record
    assert column(uri, opts)
    assert objects(url, "db/r.lance/_geneva/n/") == ["db/r.lance/_geneva/n/state.arrow"]


def test_a_driver_killed_mid_run_on_gcs_resumes_without_recomputing_its_finished_fragments(gcs, tmp_path, ray_session):
    from test_resume import kill_after_commits, logged

    url, opts = gcs
    sizes, uri = [400, 300, 500, 300], "gs://lake/db"
    conn, start = lancedb.connect(uri, storage_options=opts), 0
    for i, n in enumerate(sizes):
        part = pa.table({"x": pa.array(range(start, start + n), pa.int64()), "frag": pa.array([i] * n, pa.int64())})
        conn.create_table("k", part) if i == 0 else conn.open_table("k").add(part)
        start += n
    log = tmp_path / "calls.log"
    spec = {"table": {"uri": uri, "name": "k", "storageOptions": opts}, "column": "y", "commitEvery": 1, "concurrency": 1,
            "udf": {"function": "sample_udfs:Logged", "inputColumns": ["x", "frag"], "outputType": "int64",
                    "initArgs": {"log": str(log), "delay": 0.5}, "batchSize": 100}}
    path = tmp_path / "backfill.yaml"
    path.write_text(json.dumps(spec))
    table_uri = f"{uri}/k.lance"
    kill_after_commits(path, ray_session, lambda: lance.dataset(table_uri, storage_options=opts), 2)
    first = logged(log)
    finished = {f for f, n in first.items() if n == sizes[f]}
    assert {0, 1} <= finished and sum(first.values()) < sum(sizes)
    before = log.stat().st_size
    r = run_backfill(spec)
    second = sum(int(line.split()[1]) for line in log.read_text()[before:].splitlines() if line)
    assert r.rows_computed == second == sum(n for f, n in enumerate(sizes) if f not in finished)
    got = lance.dataset(table_uri, storage_options=opts).to_table(columns=["x", "y"]).to_pydict()
    assert got["y"] == [2 * x for x in got["x"]]
    assert objects(url, "db/k.lance/_geneva/y/") == ["db/k.lance/_geneva/y/state.arrow"]


def test_bad_gcs_credentials_are_refused_naming_the_field(gcs, tmp_path):
    _, opts = gcs
    uri, spec = gcs_table(opts, "c")
    with pytest.raises(SpecError) as e:  # a key in the resource itself: refused before anything runs
        run_backfill({**spec, "table": {**spec["table"], "storageOptions": {**opts, "google_service_account_key": "{}"}}})
    assert e.value.field == "table" and "storageOptions must not hold credentials" in str(e.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path in (str(tmp_path / "missing.json"), str(broken)):
        with pytest.raises(StorageError) as e:
            run_backfill({**spec, "table": {**spec["table"], "storageOptions": {**opts, "google_service_account": path}}})
        assert e.value.field == "table.uri" and "gs://lake/db/c.lance" in str(e.value), str(e.value)
