"""Deterministic benchmark table: id int64, text string (short), num int64.

Written once as a template LanceDB database (``<db>/<name>.lance``); every contender gets its own
byte-for-byte copy of the template directory, so each starts from the same table state (same
fragments, same files, same version, no output column).

Only pyarrow/numpy/lance are used here, so the module also works inside the geneva virtualenv.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

TABLE_NAME = "bench"
# Lance file format 2.0 is readable by every pylance the peers may bring (geneva pins its own).
DATA_STORAGE_VERSION = "2.0"

_WORDS = np.array(
    "lance ray arrow column fragment backfill geneva operator table vector embed caption image "
    "cloud bucket shard batch worker driver commit version schema index query filter".split()
)


def make_table(rows: int, seed: int = 42, start: int = 0) -> pa.Table:
    """Rows [start, start+rows) of the deterministic table (same seed => same bytes)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(start, start + rows, dtype=np.int64)
    num = rng.integers(-1_000_000, 1_000_000, size=start + rows, dtype=np.int64)[start:]
    # two or three words, 8..30 bytes: short captions
    w = rng.integers(0, len(_WORDS), size=(start + rows, 3))[start:]
    k = rng.integers(2, 4, size=start + rows)[start:]
    a, b, c = _WORDS[w[:, 0]], _WORDS[w[:, 1]], _WORDS[w[:, 2]]
    two = np.char.add(np.char.add(a, " "), b)
    three = np.char.add(np.char.add(two, " "), c)
    text = np.where(k == 2, two, three)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "text": pa.array(text.tolist(), pa.string()),
            "num": pa.array(num, pa.int64()),
        }
    )


CHUNK_ROWS = 1 << 22  # tables larger than this are generated chunk by chunk (memory stays flat)


def table_chunks(rows: int, seed: int = 42):
    """The table as a stream of pa.Tables: make_table itself up to CHUNK_ROWS (the bytes of every
    table measured before chunking existed), else chunks of CHUNK_ROWS rows, chunk i from seed
    (seed, i): as deterministic, without generating a 50M-row table in memory at once."""
    if rows <= CHUNK_ROWS:
        yield make_table(rows, seed)
        return
    for i, start in enumerate(range(0, rows, CHUNK_ROWS)):
        t = make_table(min(CHUNK_ROWS, rows - start), seed=[seed, i])
        yield t.set_column(0, "id", pa.array(np.arange(start, start + t.num_rows, dtype=np.int64)))


def write_template(db_dir: str | os.PathLike, rows: int, fragments: int, seed: int = 42, skew: int = 1) -> Path:
    """Write the table as ``fragments`` fragments into ``db_dir/<TABLE_NAME>.lance``: of equal size,
    or with skew > 1 the first fragment ``skew`` times the size of each of the others."""
    import lance

    db = Path(db_dir)
    db.mkdir(parents=True, exist_ok=True)
    uri = db / f"{TABLE_NAME}.lance"
    if uri.exists():
        shutil.rmtree(uri)
    if skew == 1:
        per_file = -(-rows // fragments)  # ceil
        source = make_table(rows, seed) if rows <= CHUNK_ROWS else pa.RecordBatchReader.from_batches(
            make_table(1, seed).schema, (b for t in table_chunks(rows, seed) for b in t.to_batches()))
        lance.write_dataset(source, str(uri), max_rows_per_file=per_file, max_rows_per_group=min(per_file, 4096),
                            data_storage_version=DATA_STORAGE_VERSION)
    else:
        # one big fragment of skew units, then fragments - 1 of one unit each
        unit = rows // (skew + fragments - 1)
        table = pa.concat_tables(table_chunks(rows, seed))
        big = skew * unit
        small = -(-(rows - big) // (fragments - 1))  # ceil: the remainder spread, no extra fragment
        for i, (off, n, per) in enumerate([(0, big, big), (big, rows - big, small)]):
            lance.write_dataset(table.slice(off, n), str(uri), mode="create" if i == 0 else "append",
                                max_rows_per_file=per, max_rows_per_group=min(per, 4096),
                                data_storage_version=DATA_STORAGE_VERSION)
    ds = lance.dataset(str(uri))
    nfrag = len(ds.get_fragments())
    if nfrag < fragments or ds.count_rows() != rows:
        raise RuntimeError(f"template has {nfrag} fragments / {ds.count_rows()} rows, wanted {fragments} / {rows}")
    return uri


def ensure_template(cache_dir: str | os.PathLike, rows: int, fragments: int, seed: int = 42, skew: int = 1) -> Path:
    """The template database dir for (rows, fragments, seed, skew), written once and reused across runs."""
    db = Path(cache_dir) / (f"template-{rows}-{fragments}-{seed}" + (f"-skew{skew}" if skew != 1 else ""))
    marker = db / ".complete"
    if not marker.exists():
        if db.exists():
            shutil.rmtree(db)
        write_template(db, rows, fragments, seed, skew)
        marker.write_text("ok\n")
    return db


def fresh_copy(template_db: str | os.PathLike, dest_db: str | os.PathLike) -> Path:
    """A private copy of the template database at ``dest_db`` (replacing whatever was there)."""
    dest = Path(dest_db)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(template_db, dest, ignore=shutil.ignore_patterns(".complete"))
    return dest


def dataset(db: str | os.PathLike):
    import lance

    return lance.dataset(str(Path(db) / f"{TABLE_NAME}.lance"))


def remove(db: str | os.PathLike) -> None:
    """Drop a contender's copy once checked (copies of large tables add up on a shared disk)."""
    shutil.rmtree(db, ignore_errors=True)


if __name__ == "__main__":  # python -m bench.data DIR ROWS FRAGMENTS
    import sys
    import time

    t = time.perf_counter()
    p = write_template(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    print(p, f"{time.perf_counter() - t:.2f}s")
