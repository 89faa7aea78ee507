"""Demo: build a ~1M-row table in ./demo-data and backfill a column on a local Ray.

    python examples/demo.py [--rows 1000000] [--fragments 16] [--data ./demo-data] [--fresh]

Run it from the repository root (the udf `examples.udfs.text:length` is imported from there).
Run it twice: the second run finds every row computed and commits nothing.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.getcwd())

WORDS = np.array("lance ray arrow column fragment backfill vector embed caption model table query".split())


def build_table(db: str, rows: int, fragments: int) -> None:
    import lancedb

    conn = lancedb.connect(db)
    rng = np.random.default_rng(0)
    per = -(-rows // fragments)
    table = None
    for start in range(0, rows, per):
        n = min(per, rows - start)
        counts = rng.integers(1, 12, n)
        words = WORDS[rng.integers(0, len(WORDS), counts.sum())]
        splits = np.split(words, np.cumsum(counts)[:-1])
        captions = [" ".join(w) for w in splits]
        part = pa.table({"id": pa.array(np.arange(start, start + n), pa.int64()),
                         "caption": pa.array(captions, pa.string()),
                         "lang": pa.array(np.where(rng.random(n) < 0.8, "en", "fr"))})
        if table is None:
            table = conn.create_table("captions", part, mode="overwrite")
        else:
            table.add(part)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--fragments", type=int, default=16)
    ap.add_argument("--data", default="./demo-data")
    ap.add_argument("--fresh", action="store_true", help="rebuild the table even if it exists")
    args = ap.parse_args()

    from geneva_operator.engine import TerminalProgress, run_backfill

    db = os.path.abspath(args.data)
    if args.fresh and os.path.exists(db):
        shutil.rmtree(db)
    if not os.path.exists(os.path.join(db, "captions.lance")):
        t = time.monotonic()
        print(f"building {args.rows:,} rows in {args.fragments} fragments at {db} ...", flush=True)
        build_table(db, args.rows, args.fragments)
        print(f"built in {time.monotonic() - t:.1f}s", flush=True)

    spec = {
        "table": {"uri": db, "name": "captions"},
        "column": "caption_len",
        "udf": {"function": "examples.udfs.text:length", "inputColumns": ["caption"], "outputType": "int32",
                "version": "1", "batchSize": 65536},
        "commitEvery": 4,
    }
    print("starting a local Ray and backfilling captions.caption_len = examples.udfs.text:length(caption)", flush=True)
    r = run_backfill(spec, progress=TerminalProgress(desc="caption_len"))

    import lance

    ds = lance.dataset(os.path.join(db, "captions.lance"))
    sample = ds.to_table(columns=["id", "caption", "caption_len"], limit=3).to_pylist()
    print()
    print(f"done: {r.rows_done:,} rows in {r.fragments_done}/{r.fragments_total} fragments, "
          f"{r.rows_computed:,} computed now, {r.commits} commits, {r.seconds:.1f}s "
          f"({r.rows_per_second:,.0f} rows/s incl. Ray startup)")
    print(f"table version {r.read_version} -> {r.committed_version}; {ds.count_rows():,} rows; "
          f"{ds.count_rows(filter='caption_len IS NULL'):,} nulls in caption_len")
    for row in sample:
        print(f"  {row['id']:>7}  {row['caption_len']:>3}  {row['caption']!r}")
    if r.rows_computed == 0:
        print("nothing to do: every row was already computed by this udf version (no commit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
