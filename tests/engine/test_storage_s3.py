"""The whole engine against an S3-compatible server on loopback (moto in server mode)."""
import boto3
import lance
import lancedb
import pyarrow as pa
import pytest

from geneva_operator.engine import run_backfill

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="lake")
    yield url
    server.stop()


def test_a_backfill_round_trips_through_s3(s3_endpoint, ray_session):
    # credentials come from the environment (conftest), only the endpoint is an option
    opts = {"aws_endpoint": s3_endpoint, "allow_http": "true", "aws_region": "us-east-1"}
    uri = "s3://lake/db"
    conn = lancedb.connect(uri, storage_options=opts)
    t = conn.create_table("t", pa.table({"id": pa.array(range(0, 700), pa.int64()), "s": [None if i % 5 == 0 else "ab" * (i % 4) for i in range(700)]}))
    t.add(pa.table({"id": pa.array(range(700, 1000), pa.int64()), "s": ["xyz"] * 300}))
    spec = {"table": {"uri": uri, "name": "t", "storageOptions": opts}, "column": "n",
            "udf": {"function": "sample_udfs:length", "inputColumns": ["s"], "outputType": "int32"}, "commitEvery": 1}
    r = run_backfill(spec)
    ds = lance.dataset(f"{uri}/t.lance", storage_options=opts)
    got = ds.to_table(columns=["id", "s", "n"]).sort_by("id").to_pydict()
    assert got["n"] == [None if s is None else len(s) for s in got["s"]]
    assert r.rows_done == 1000 and r.committed_version == ds.version
    # checkpoints live next to the table on the same store: after success only the compact state,
    # and a rerun finds nothing to do from it
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="db/t.lance/_geneva/n/")["Contents"]]
    assert keys == ["db/t.lance/_geneva/n/state.arrow"]
    assert run_backfill(spec).commits == 0
    # a fragment computed but not committed (the driver died) is resumed from its record on S3 too
    spec2 = {**spec, "column": "n2"}
    from geneva_operator.engine import execute
    from geneva_operator.engine.plan import load_checkpoints, plan
    from geneva_operator.engine.manifest import parse_spec
    from geneva_operator.engine.table import TableLocation
    from geneva_operator.engine.udf import udf_key
    parsed = parse_spec(spec2)
    loc = TableLocation.from_ref(parsed.table)
    p = plan(parsed, loc, loc.open(), run_id="dead")
    ident = {"key": udf_key(parsed.udf, "n2"), "where": "", "mode": "Missing"}
    ctx = execute.TaskContext(loc, p.read_version, "n2", False, parsed.udf, p.key, "dead", ident)
    execute.compute_fragment(ctx, p.units[0])  # in this process: data file + record, no commit
    assert [r.run_id for r in load_checkpoints(loc, "n2").records.values()] == ["dead"]
    r2 = run_backfill(spec2)
    assert r2.rows_computed == 300 and r2.rows_done == 1000
    got = lance.dataset(f"{uri}/t.lance", storage_options=opts).to_table(columns=["s", "n2"]).to_pydict()
    assert got["n2"] == [None if s is None else len(s) for s in got["s"]]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="lake", Prefix="db/t.lance/_geneva/n2/")["Contents"]]
    assert keys == ["db/t.lance/_geneva/n2/state.arrow"]
