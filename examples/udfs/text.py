"""Example text UDFs.

    length      Batch udf: characters per string (nulls stay null), vectorized with Arrow.
    FakeEmbed   a class udf standing in for a model: set up once per worker process (the
                "weights" are a seeded random projection), then called per batch. Its output
                is deterministic, so a rerun or a retried task produces identical vectors.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def length(text: pa.Array) -> pa.Array:
    return pc.utf8_length(text).cast(pa.int32())


def word_count(text: str | None) -> int | None:
    """A Scalar udf: called once per row with a Python value (None for null)."""
    return None if text is None else len(text.split())


class FakeEmbed:
    """udf.function: examples.udfs.text:FakeEmbed, outputType: fixed_size_list<float32>[dim]."""

    def __init__(self, dim: int = 16, seed: int = 42):
        self.dim, self.seed = dim, seed
        self.weights = None

    def setup(self) -> None:
        # Where a real model would be loaded: once per worker process, not per batch.
        self.weights = np.random.default_rng(self.seed).standard_normal((256, self.dim)).astype(np.float32)

    def __call__(self, text: pa.Array) -> pa.Array:
        rows = []
        for s in text.to_pylist():
            counts = np.zeros(256, dtype=np.float32)
            if s:
                counts += np.bincount(np.frombuffer(s.encode(), dtype=np.uint8), minlength=256)
            v = counts @ self.weights
            n = float(np.linalg.norm(v))
            rows.append(v / n if n else v)
        flat = pa.array(np.concatenate(rows) if rows else np.zeros(0, np.float32), pa.float32())
        return pa.FixedSizeListArray.from_arrays(flat, self.dim)


def stable_hash(text: pa.Array) -> pa.Array:
    """Batch udf returning int64: first 8 bytes of sha1 (null for null)."""
    return pa.array([None if s is None else int.from_bytes(hashlib.sha1(s.encode()).digest()[:8], "little", signed=True)
                     for s in text.to_pylist()], pa.int64())
