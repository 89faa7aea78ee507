"""CPU seconds and memory of a process from /proc (psutil is not a dependency)."""
from __future__ import annotations

import os
import threading
import time
from typing import Optional

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14, 15 of stat(5)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(line.split()[1]) / 1024
    return out


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Sampler:
    """Samples a process's CPU seconds and RSS every `interval` seconds in a thread."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float, float]] = []  # (time, cpu s, rss MB)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> "Sampler":
        self._thread = threading.Thread(target=self._run, name="procstat", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.time(), cpu_seconds(self.pid), memory_mb(self.pid)["VmRSS"]))
            except (OSError, KeyError, IndexError):
                return
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def cpu_between(self, t0: float, t1: float) -> float:
        """CPU seconds used between two instants (nearest samples)."""
        def at(t: float) -> float:
            best = min(self.samples, key=lambda s: abs(s[0] - t))
            return best[1]
        return at(t1) - at(t0) if self.samples else float("nan")

    def peak_rss_between(self, t0: float, t1: float) -> float:
        vals = [s[2] for s in self.samples if t0 <= s[0] <= t1]
        return max(vals) if vals else float("nan")
