"""The peers that run in virtualenvs of their own: their pinned versions (here and nowhere else),
their venvs (created once under ~/.cache, reused) and one subprocess per peer and benchmark run.

Each peer brings its own Ray, pylance and pyarrow, which the project's venv must not have to agree
with. A venv's directory name carries a hash of its requirements, so changing a pin below makes a
new venv instead of reusing a stale one; a venv counts as ready only once pip finished (a marker
file holding the requirements), so an interrupted install is redone.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV_ROOT = Path(os.environ.get("BENCH_VENVS", Path.home() / ".cache" / "geneva-operator" / "bench-venvs"))


@dataclass(frozen=True)
class Peer:
    script: str  # in bench/, run by the venv's python
    requirements: tuple[str, ...]
    args: tuple[str, ...] = ()  # extra flags of the script

    @property
    def venv(self) -> Path:
        digest = hashlib.sha256("\n".join(self.requirements).encode()).hexdigest()[:10]
        return VENV_ROOT / f"{Path(self.script).stem.removeprefix('peer_')}-{digest}"


PEERS = {
    # geneva pins ray 2.60.0, lancedb 0.40.0, pylance 14.0.2 itself
    "geneva": Peer("peer_geneva.py", ("geneva==0.17.0",)),
    "lance-ray": Peer("peer_lance_ray.py", ("lance-ray==0.5.0", "ray==2.60.0", "pylance==14.0.2")),
    # daft-lance 0.6 needs daft 0.7 (daft.io._checkpoint) but declares less: `daft[ray]` alone resolves
    # daft 0.6.14. daft 0.7.26 caps ray below 2.60, so pip picks ray 2.59.0 for this venv.
    "daft": Peer("peer_daft.py", ("daft-lance==0.6.0", "daft[ray]==0.7.26", "pylance==14.0.2")),
    "daft-df": Peer("peer_daft.py", ("daft-lance==0.6.0", "daft[ray]==0.7.26", "pylance==14.0.2"),
                    ("--api", "merge_columns_df")),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def ensure_venv(name: str) -> Path:
    """The peer's venv python, installing the venv first if it is not complete."""
    peer = PEERS[name]
    py, marker = peer.venv / "bin" / "python", peer.venv / ".requirements"
    want = "\n".join(peer.requirements) + "\n"
    VENV_ROOT.mkdir(parents=True, exist_ok=True)
    # two benchmarks starting at once must not both (re)create one venv
    with open(f"{peer.venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if py.exists() and marker.exists() and marker.read_text() == want:
            return py
        log(f"creating {peer.venv} with {' '.join(peer.requirements)} (a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(peer.venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *peer.requirements], check=True)
        marker.write_text(want)
    return py


def run(name: str, jobs: list[tuple[str, Path]], warmup: Optional[Path], cpus: int, logfile: Path,
        extra: tuple[str, ...] = ()) -> dict:
    """All jobs (udf, db) of one peer in one subprocess: one Ray start, one warm-up. Returns the
    script's last JSON line (versions, ray_start_seconds, warmup_seconds, jobs, error)."""
    py = ensure_venv(name)
    # -P: no bench/ on the peer's sys.path, so nothing of ours can shadow a module it imports
    cmd = [str(py), "-P", str(HERE / PEERS[name].script), "--column", "out", "--num-cpus", str(cpus),
           *PEERS[name].args, *extra]
    for udf, db in jobs:
        cmd += ["--job", f"{udf}={db}"]
    if warmup is not None:
        cmd += ["--warmup-db", str(warmup)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "LANCE_LOG": "error"}
    env.pop("RAY_ADDRESS", None)
    with open(logfile, "a") as lf:
        lf.write(f"\n$ {' '.join(cmd)}\n")
        lf.flush()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=lf, text=True, env=env, cwd=str(REPO), timeout=3600)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    try:
        res = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        res = {"ok": False, "jobs": [], "error": f"exit {p.returncode}, no JSON line; stdout tail: {p.stdout[-500:]!r}"}
    res["cmd"] = " ".join(cmd)
    return res
