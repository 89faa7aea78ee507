"""What the benchmarks measure besides wall time: the udf's own CPU time, the driver's peak RSS,
the bytes of checkpoints written under a table, and the machine's load.

All of it from outside the engine (Linux /proc and inotify), so the engine needs no hooks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import select
import struct
import threading
import time
from pathlib import Path

from bench import data, udfs


class FragmentWork:
    """The fragments' own seconds in the Ray workers (FragmentResult.seconds: read, udf, write,
    record), summed over the engine runs in a block: the work the slots had to share, whatever
    the load made of it, so makespan / (work / CPUs) is what task sizing alone leaves over. The
    one hook here: the driver's run_units, wrapped in this process for the block."""

    def __enter__(self) -> "FragmentWork":
        from geneva_operator.engine import runner

        self.seconds, self._runner, self._orig = 0.0, runner, runner.run_units

        def run_units(plan, ctx, *, on_result, **kw):
            def seen(r):
                self.seconds += r.seconds
                on_result(r)
            return self._orig(plan, ctx, on_result=seen, **kw)

        runner.run_units = run_units
        return self

    def __exit__(self, *exc) -> None:
        self._runner.run_units = self._orig


def load_average() -> str:
    return "{:.1f} / {:.1f} / {:.1f}".format(*os.getloadavg())


def udf_seconds(db: Path, udf: str, batch_size: int = 4096) -> float:
    """The udf alone, in this process, on every batch of the table's input column (as the engine
    batches it: per fragment, batch_size rows): the sum of the calls' wall time, reading excluded."""
    in_col = udfs.UDFS[udf][0]
    fn = udfs.get(udf)
    ds = data.dataset(db)
    total = 0.0
    for frag in ds.get_fragments():
        for batch in frag.to_batches(columns=[in_col], batch_size=batch_size):
            col = batch.column(0)
            t = time.perf_counter()
            fn(col)
            total += time.perf_counter() - t
    return total


class PeakRSS:
    """This process's peak resident set over a block: the kernel's high-water mark (VmHWM),
    reset on entry through /proc/self/clear_refs; and what was resident at entry (`start`),
    so that the block's own growth (bytes - start) shows apart from what earlier work in
    the process left resident (the in-process floor's Arrow buffers, Ray's driver)."""

    def __enter__(self) -> "PeakRSS":
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self.bytes, self.start = 0, _status_kb("VmRSS") * 1024
        return self

    def __exit__(self, *exc) -> None:
        self.bytes = _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


# inotify(7): the events that complete a file under a watched directory
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_ISDIR = 0x8, 0x80, 0x100, 0x40000000
_EVENT = struct.Struct("iIII")


class FileWrites:
    """Bytes of files completed under a directory tree while the block runs, counted with inotify:
    a file closed after writing, or renamed into place (how the engine writes its checkpoint
    records and state: a temp file, then os.replace), counts with its size at that moment; temp
    files (".tmp-*") are not counted twice. Directories created meanwhile are watched as they
    appear (and scanned, for files completed before their watch). The tree's root may not exist
    yet: its parent is watched until it does."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.bytes = 0
        self.files = 0
        self.missed = 0  # completed but gone before we could stat them
        self._seen: set[tuple[str, float]] = set()

    def __enter__(self) -> "FileWrites":
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self._libc = libc
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self._fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self._wd: dict[int, Path] = {}
        self._stop = os.pipe()
        self._watch_tree(self.root if self.root.exists() else self.root.parent)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        os.write(self._stop[1], b"x")
        self._thread.join()
        for fd in (self._fd, *self._stop):
            os.close(fd)

    def _watch(self, d: Path) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(d), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE)
        if wd >= 0:
            self._wd[wd] = d

    def _watch_tree(self, d: Path) -> None:
        self._watch(d)
        if d != self.root and self.root not in (d, *d.parents):
            return  # the parent of a root not there yet: only its creation matters
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            return
        for e in entries:
            p = Path(e.path)
            if e.is_dir():
                self._watch_tree(p)
            else:
                self._count(p)

    def _under_root(self, p: Path) -> bool:
        return p == self.root or self.root in p.parents

    def _count(self, p: Path) -> None:
        if p.name.startswith(".tmp-") or not self._under_root(p):
            return
        try:
            st = p.stat()
        except FileNotFoundError:
            self.missed += 1
            return
        key = (str(p), st.st_mtime_ns)
        if key in self._seen:
            return
        self._seen.add(key)
        self.bytes += st.st_size
        self.files += 1

    def _loop(self) -> None:
        while True:
            ready, _, _ = select.select([self._fd, self._stop[0]], [], [])
            if self._fd in ready:
                self._drain()
            if self._stop[0] in ready:
                self._drain()
                return

    def _drain(self) -> None:
        while True:
            try:
                buf = os.read(self._fd, 65536)
            except BlockingIOError:
                return
            off = 0
            while off < len(buf):
                wd, mask, _, n = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size: off + _EVENT.size + n].rstrip(b"\0")
                off += _EVENT.size + n
                d = self._wd.get(wd)
                if d is None:
                    continue
                p = d / os.fsdecode(name)
                if mask & _IN_CREATE and mask & _IN_ISDIR:
                    if self._under_root(p) or p in self.root.parents:
                        self._watch_tree(p)
                elif mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO) and not mask & _IN_ISDIR:
                    self._count(p)
