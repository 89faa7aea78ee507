"""gs:// tables against a GCS emulator on loopback: what can be tested without GCS itself.

Lance's object store speaks GCS's XML API: bucket listings (`GET /<bucket>?list-type=2`) and
object PUTs. No GCS emulator from a package registry serves all of it:
- fsouza/fake-gcs-server v1.56.1 (`go install github.com/fsouza/fake-gcs-server@v1.56.1`,
  built by `tests/controlplane/build.sh fake-gcs-server`) serves the listings and reads but
  answers Lance's first write, a single XML PUT of a data file, with `400 Bad Request:
  {"error":{"code":400,"message":"invalid uploadType",...}}` (upstream issue
  fsouza/fake-gcs-server#331, open).
- gcp-storage-emulator 2026.7.19 (PyPI) answers 501 to the listing Lance starts every open and
  write with, and to HEAD, XML DELETE and multipart uploads; it ignores
  `x-goog-if-generation-match: 0`, on which Lance's commits rely.
So a backfill cannot round-trip, or resume after a kill, on an emulator. What is tested here on
fake-gcs-server: a table put there through the JSON API is read by Lance and by the engine; a
backfill fails, leaves the table readable and every object as it was; credentials are refused
naming the field. Lance reaches the emulator through a service-account file whose
`gcs_base_url` names it (`disable_oauth`: no token exchange), given as the
`google_service_account` storage option: a path, not a secret, so the API accepts it.
"""
import json
import os
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import lance
import lancedb
import pyarrow as pa
import pytest

from geneva_operator.engine import BackfillError, SpecError, StorageError, run_backfill
from tests.controlplane.harness import read_versions

pytestmark = pytest.mark.engine

BUILD_SH = Path(__file__).resolve().parents[1] / "controlplane" / "build.sh"
VERSION = read_versions()["FAKE_GCS_SERVER_VERSION"]  # tests/controlplane/versions.env, as for build.sh
CACHE = Path(os.environ.get("GENEVA_CACHE", Path.home() / ".cache" / "geneva-operator"))
BIN = CACHE / "bin" / f"fake-gcs-server-{VERSION}" / "fake-gcs-server"
REFUSAL = "400 Bad Request"  # with {"error":{"code":400,"message":"invalid uploadType",...}}


def emulator_binary() -> Path:
    if not BIN.exists():
        try:
            subprocess.run(["bash", str(BUILD_SH), "fake-gcs-server"], check=True, timeout=1800)
        except (OSError, subprocess.SubprocessError) as e:
            pytest.fail(f"cannot build fake-gcs-server {VERSION} (tests/controlplane/build.sh fake-gcs-server, "
                        f"needs Go and the Go module proxy): {e}")
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
    """name -> (generation, md5) of every object under prefix, through the JSON API."""
    q = urllib.parse.urlencode({"prefix": prefix})
    with urllib.request.urlopen(f"{url}/storage/v1/b/lake/o?{q}") as r:
        return {o["name"]: (o["generation"], o["md5Hash"]) for o in json.load(r).get("items", [])}


def gcs_table(url, opts, tmp_path, name):
    """A two-fragment table (700 + 300 rows) written locally by Lance, then uploaded object by
    object through the JSON API (media uploads, which fake-gcs-server serves)."""
    local = tmp_path / "local"
    t = lancedb.connect(str(local)).create_table(
        name, pa.table({"id": pa.array(range(0, 700), pa.int64()), "s": [None if i % 5 == 0 else "ab" * (i % 4) for i in range(700)]}))
    t.add(pa.table({"id": pa.array(range(700, 1000), pa.int64()), "s": ["xyz"] * 300}))
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        q = urllib.parse.urlencode({"uploadType": "media", "name": f"db/{f.relative_to(local).as_posix()}"})
        req = urllib.request.Request(f"{url}/upload/storage/v1/b/lake/o?{q}", data=f.read_bytes(),
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).read()
    uri = "gs://lake/db"
    spec = {"table": {"uri": uri, "name": name, "storageOptions": opts}, "column": "n",
            "udf": {"function": "sample_udfs:length", "inputColumns": ["s"], "outputType": "int32"}, "commitEvery": 1}
    return f"{uri}/{name}.lance", spec, t.to_arrow()


def test_lance_reads_a_gcs_table_through_the_emulator(gcs, tmp_path):
    url, opts = gcs
    uri, _, want = gcs_table(url, opts, tmp_path, "read")
    ds = lance.dataset(uri, storage_options=opts)
    assert ds.version == 2 and [f.count_rows() for f in ds.get_fragments()] == [700, 300]
    assert ds.to_table().equals(want)
    conn = lancedb.connect("gs://lake/db", storage_options=opts)
    assert "read" in conn.list_tables().tables and conn.open_table("read").to_arrow().equals(want)


def test_the_emulator_refuses_lances_writes_with_invalid_upload_type(gcs):
    # The limit every test below works around. If this fails because the write went through,
    # the emulator now serves Lance's XML PUTs: test round trips and resumes here, as for S3.
    _, opts = gcs
    with pytest.raises(OSError) as e:
        lance.write_dataset(pa.table({"a": [1]}), "gs://lake/w.lance", storage_options=opts)
    assert REFUSAL in str(e.value) and "invalid uploadType" in str(e.value) and "single PUT" in str(e.value), str(e.value)


def test_a_backfill_that_cannot_write_to_gcs_leaves_the_table_readable_and_unchanged(gcs, tmp_path, ray_session):
    url, opts = gcs
    uri, spec, want = gcs_table(url, opts, tmp_path, "t")
    before = objects(url, "db/t.lance/")
    with pytest.raises(BackfillError) as e:
        run_backfill(spec)
    assert "Traceback" not in str(e.value) and "no fragment was committed" in str(e.value), str(e.value)
    assert objects(url, "db/t.lance/") == before  # nothing written, nothing deleted
    ds = lance.dataset(uri, storage_options=opts)
    assert ds.version == 2 and "n" not in ds.schema.names and ds.to_table().equals(want)


def test_a_backfill_that_cannot_write_to_gcs_is_a_storage_error_carrying_the_refusal(gcs, tmp_path, ray_session):
    url, opts = gcs
    uri, spec, _ = gcs_table(url, opts, tmp_path, "e")
    with pytest.raises(StorageError) as e:
        run_backfill(spec)
    assert e.value.field == "table.uri" and uri in str(e.value), str(e.value)
    assert REFUSAL in str(e.value) and "invalid uploadType" in str(e.value), str(e.value)


def test_bad_gcs_credentials_are_refused_naming_the_field(gcs, tmp_path):
    url, opts = gcs
    uri, spec, _ = gcs_table(url, opts, tmp_path, "c")
    with pytest.raises(SpecError) as e:  # a key in the resource itself: refused before anything runs
        run_backfill({**spec, "table": {**spec["table"], "storageOptions": {**opts, "google_service_account_key": "{}"}}})
    assert e.value.field == "table" and "storageOptions must not hold credentials" in str(e.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    for path in (str(tmp_path / "missing.json"), str(broken)):
        with pytest.raises(StorageError) as e:
            run_backfill({**spec, "table": {**spec["table"], "storageOptions": {**opts, "google_service_account": path}}})
        assert e.value.field == "table.uri" and uri in str(e.value), str(e.value)
