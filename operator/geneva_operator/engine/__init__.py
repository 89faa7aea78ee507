"""The backfill engine: fill one column of a LanceDB table with a user function's output.

Plan (plan.py) -> Ray tasks of a few fragments each, sized from the measured fragment time
(sizing.py), reporting every fragment (execute.py) -> grouped commits (commit.py: the first also creates the column), with checkpoints
(checkpoint.py: per-fragment records while a run is unfinished, folded into one compact
state after success; small objects next to the table, objects.py; carried over compactions
by history.py) for resume and mode Missing, the run's identity and counters (run.py), and
progress sinks (progress.py). No Kubernetes here: the same code runs on a laptop's local Ray
(`geneva-backfill run`, cli.py) and as the Ray job the operator submits (job.py).
"""
import os as _os

# Before lance is first imported: its Rust logger reads this once. DataReplacement logs an
# "unstable operation" warning per commit that would drown the progress output.
_os.environ.setdefault("LANCE_LOG", "error")

from .errors import BackfillError, SpecError, StorageError, UdfError
from .progress import LogLineProgress, MultiProgress, NullProgress, ProgressSink, ProgressUpdate, TerminalProgress
from .runner import BackfillResult, ensure_ray, run_backfill

__all__ = [
    "run_backfill", "BackfillResult", "ensure_ray",
    "BackfillError", "SpecError", "StorageError", "UdfError",
    "ProgressSink", "ProgressUpdate", "TerminalProgress", "LogLineProgress", "MultiProgress", "NullProgress",
]
