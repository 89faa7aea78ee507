"""Carrying checkpoints across compaction: which rows are done must survive a rewrite that
keeps rows and values.

A checkpoint names a fragment and the column's data file in it (checkpoint.py). Compaction
(`compact_files`, LanceDB's `optimize`) replaces fragments by new ones holding the same rows
in new files, so every checkpoint of a compacted fragment stops matching and mode Missing
would compute all of its rows again. Lance records what each compaction did: its
transaction (a `Rewrite`) lists groups of old fragments, with their metadata as they were
read, and the new fragments written from them. Within a group the new fragments hold the
old fragments' live rows (deleted rows dropped), in order, value for value: Lance's own
index remapping relies on that. So a checkpoint valid for an old fragment as the rewrite
read it (same column file, same input files, same udf) tells exactly which rows of the new
fragments are done.

Every step is checked, and anything unknown means "not done" (recomputed, never wrong): a
group whose old fragments had deleted rows that can no longer be read (their version was
cleaned up), or whose row counts do not add up, carries nothing; an old fragment without a
valid checkpoint contributes no done rows; a carried checkpoint is used only while its file
is still the new fragment's current one, like any other. Rewrites are followed oldest first,
so a compaction of compacted fragments carries what the first one carried. Only fragments
that disappeared trigger the walk back through the table's versions, at most MAX_VERSIONS
transaction reads; the carried checkpoints are folded into the state after the run, so the
walk happens once per compaction.
"""
from __future__ import annotations

import logging
from typing import Optional

import lance
import numpy as np

from .checkpoint import NO_ROWS, FragmentRecord, pack_mask
from .table import ROW_OFFSET_MASK, TableLocation, field_file, input_signature

log = logging.getLogger(__name__)

MAX_VERSIONS = 512  # table versions looked back through for the rewrites of vanished fragments


def carry_over(loc: TableLocation, ds: lance.LanceDataset, candidates: list[FragmentRecord], *, key: str,
               out_ids: frozenset[int], in_ids: list[frozenset[int]]) -> dict[int, FragmentRecord]:
    """Checkpoints for fragments of `ds` that compactions wrote from fragments `candidates`
    (state entries and records of this udf key) describe: fragment id -> checkpoint."""
    live = {f.fragment_id for f in ds.get_fragments()}
    by_id: dict[int, list[FragmentRecord]] = {}
    for c in candidates:
        if c.udf_key == key and c.fragment_id not in live:
            by_id.setdefault(c.fragment_id, []).append(c)
    if not by_id:
        return {}
    carried: dict[int, FragmentRecord] = {}
    versions: dict[int, lance.LanceDataset] = {}  # old versions opened for their deletions, once each
    for tx in reversed(_rewrites_of(ds, set(by_id))):  # oldest first: a later one may take what an earlier one wrote
        for group in tx.operation.groups:
            for rec in _carry_group(loc, versions, tx.read_version, group, by_id, key, out_ids, in_ids):
                by_id.setdefault(rec.fragment_id, []).append(rec)
                carried[rec.fragment_id] = rec
    return {fid: rec for fid, rec in carried.items() if fid in live}


def _rewrites_of(ds: lance.LanceDataset, wanted: set[int]) -> list:
    """The Rewrite transactions, newest first, back to the one that took the last of `wanted`
    (or as far as the history goes)."""
    out, missing = [], set(wanted)
    for version in range(ds.version, max(0, ds.version - MAX_VERSIONS), -1):
        try:
            tx = ds.read_transaction(version)
        except (OSError, ValueError):
            tx = None
        if tx is None:
            break  # cleaned up: nothing older can be read either
        if isinstance(tx.operation, lance.LanceOperation.Rewrite):
            out.append(tx)
            missing -= {f.id for g in tx.operation.groups for f in g.old_fragments}
            if not missing:
                break
    return out


def _valid_for(meta, recs: list[FragmentRecord], key: str, out_ids, in_ids) -> Optional[FragmentRecord]:
    """The checkpoint describing an old fragment as the rewrite read it, if any."""
    current = field_file(meta, out_ids)
    sig = input_signature(meta, in_ids)
    for r in reversed(recs):
        if (current is not None and r.udf_key == key and r.output_file == current
                and r.input_signature == sig and r.physical_rows == meta.physical_rows):
            return r
    return None


def _carry_group(loc, versions, read_version: int, group, by_id, key, out_ids, in_ids) -> list[FragmentRecord]:
    old, new = group.old_fragments, group.new_fragments
    parts, run_ids = [], set()
    for meta in old:
        rec = _valid_for(meta, by_id.get(meta.id, []), key, out_ids, in_ids)
        done = rec.done_mask() if rec is not None else np.zeros(meta.physical_rows, dtype=bool)
        if meta.deletion_file is not None:
            alive = _alive(loc, versions, read_version, meta)
            if alive is None:
                return []
            done = done[alive]
        if rec is not None and done.any():
            run_ids.add(rec.run_id)
        parts.append(done)
    mask = np.concatenate(parts) if parts else np.zeros(0, dtype=bool)
    if not mask.any() or len(mask) != sum(m.physical_rows for m in new):
        return []
    # Mode All skips rows done by its own unfinished run only: a mix of runs is none of them.
    run_id = run_ids.pop() if len(run_ids) == 1 else ""
    out, start = [], 0
    for meta in new:
        n = meta.physical_rows
        part, start = mask[start:start + n], start + n
        current = field_file(meta, out_ids)
        if current is None or not part.any():
            continue
        out.append(FragmentRecord(meta.id, key, input_signature(meta, in_ids), n, base_file=None, output_file=current,
                                  base_done=NO_ROWS, done=pack_mask(part), run_id=run_id))
    return out


def _alive(loc: TableLocation, versions: dict, read_version: int, meta) -> Optional[np.ndarray]:
    """Offsets of the live rows of an old fragment, read at the version the rewrite read;
    None when that version or its deletion file is gone, or it is not the one rewritten."""
    try:
        if read_version not in versions:
            versions[read_version] = loc.open(read_version)
        frag = versions[read_version].get_fragment(meta.id)
        if frag is None or frag.metadata.deletion_file is None \
                or frag.metadata.deletion_file.asdict() != meta.deletion_file.asdict():
            return None
        addrs = frag.to_table(columns=[], with_row_address=True).column("_rowaddr").to_numpy()
    except Exception as e:  # noqa: BLE001 - any failure to read history costs recomputation only
        log.info("cannot read the deletions of fragment %d at version %d: %s", meta.id, read_version, e)
        return None
    return np.sort((addrs & ROW_OFFSET_MASK).astype(np.int64))
