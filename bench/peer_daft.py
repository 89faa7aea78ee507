"""daft-lance's merge_columns / merge_columns_df on a benchmark table, run by the daft
virtualenv's python, with Daft on the local Ray that the harness starts (``daft.set_runner_ray``).

    <venv>/bin/python -P bench/peer_daft.py --job trivial=DB1 --job heavy=DB2 [--warmup-db DIR] \
        [--num-cpus 2] [--api merge_columns|merge_columns_df]

merge_columns: ``daft_lance.merge_columns(uri, transform=<the udf as a Lance batch UDF>,
read_columns=[input])``: a Daft dataframe of fragment ids, a Daft class UDF calling
``Fragment.merge_columns`` per fragment in Ray workers, one Merge commit. It takes no filter.

merge_columns_df: the dataframe route: ``daft.read_lance(uri, with_row_address, fragment id)``,
the udf as a ``daft.func.batch`` column, ``merge_columns_df`` groups by fragment and merges the new
column positionally (every row present) or by a keyed join on ``_rowaddr``.
"""
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import peer_harness, udfs  # noqa: E402


def _merge_columns(uri: str, udf: str, column: str) -> float:
    import daft_lance

    fn = udfs.lance_batch_udf(udf, column)
    t = time.perf_counter()
    daft_lance.merge_columns(uri, transform=fn, read_columns=[udfs.UDFS[udf][0]])
    return time.perf_counter() - t


def _merge_columns_df(uri: str, udf: str, column: str) -> float:
    import daft
    import daft_lance

    in_col, _, out_type = udfs.UDFS[udf]
    fn = udfs.get(udf)

    @daft.func.batch(return_dtype=daft.DataType.from_arrow_type(out_type), batch_size=4096)
    def compute(s):
        return fn(s.to_arrow())

    t = time.perf_counter()
    df = daft.read_lance(uri, default_scan_options={"with_row_address": True}, include_fragment_id=True)
    df = df.select("_rowaddr", "fragment_id", compute(df[in_col]).alias(column))
    daft_lance.merge_columns_df(df, uri)
    return time.perf_counter() - t


def backfill(db_dir: str, table: str, udf: str, column: str, cpus: int, args) -> float:
    run = _merge_columns_df if args.api == "merge_columns_df" else _merge_columns
    return run(f"{db_dir}/{table}.lance", udf, column)


def add_args(ap) -> None:
    ap.add_argument("--api", choices=["merge_columns", "merge_columns_df"], default="merge_columns")


def after_ray(args) -> None:
    import daft

    daft.set_runner_ray(noop_if_initialized=True)


def versions() -> dict:
    from importlib.metadata import version

    return {"daft": version("daft"), "daft-lance": version("daft-lance"), "pylance": version("pylance")}


if __name__ == "__main__":
    sys.exit(peer_harness.run(backfill, versions, add_args=add_args, after_ray=after_ray))
