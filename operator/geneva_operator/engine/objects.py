"""Small objects next to a table: whole-object reads and writes, listing and deletion.

They go through plain file I/O on a local disk and through Lance's own object store
(LanceFileSession) on s3:// / gs:// / az://, so they reach exactly where the table does, with
the same storage options and credentials. A write is never seen half done: one PUT on an
object store, a write and a rename on a local disk.
"""
from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from .errors import StorageError
from .table import TableLocation

MAX_THREADS = 16  # concurrent requests to an object store


_SESSIONS: dict = {}
_SESSIONS_LOCK = threading.Lock()


class ObjectStore:
    """Small whole-object reads and writes under a folder of a table (`prefix`, relative to
    the table's root)."""

    def __init__(self, loc: TableLocation, prefix: str):
        self.loc = loc
        self.prefix = prefix
        self.local = "://" not in loc.uri  # TableLocation keeps local tables as absolute paths

    def _session(self):
        # One per table and process: creating it builds an object store client (credentials, pools).
        from lance.file import LanceFileSession

        key = (self.loc.uri, tuple(sorted(self.loc.storage_options.items())))
        with _SESSIONS_LOCK:
            s = _SESSIONS.get(key)
            if s is None:
                s = _SESSIONS[key] = LanceFileSession(self.loc.uri, storage_options=self.loc.storage_options or None)
            return s

    def _local(self, rel: str) -> str:
        return os.path.join(self.loc.uri, self.prefix, rel)

    def put(self, rel: str, data: bytes) -> None:
        """Write the whole object at once: readers see the old object or the new one, never a part."""
        try:
            if self.local:
                path = self._local(rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                    os.replace(tmp, path)
                except BaseException:
                    _unlink(tmp)
                    raise
                return
            fd, tmp = tempfile.mkstemp(prefix="geneva-ckpt-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                self._session().upload_file(tmp, f"{self.prefix}/{rel}")  # one PUT for an object this small
            finally:
                _unlink(tmp)
        except OSError as e:
            raise StorageError("table.uri", f"cannot write checkpoint {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def get(self, rel: str) -> Optional[bytes]:
        """The object's bytes, or None when there is none."""
        try:
            if self.local:
                with open(self._local(rel), "rb") as f:
                    return f.read()
            fd, tmp = tempfile.mkstemp(prefix="geneva-ckpt-")
            os.close(fd)
            try:
                self._session().download_file(f"{self.prefix}/{rel}", tmp)
                with open(tmp, "rb") as f:
                    return f.read()
            finally:
                _unlink(tmp)
        except FileNotFoundError:
            return None
        except OSError as e:
            if _not_found(e):
                return None
            raise StorageError("table.uri", f"cannot read checkpoint {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def list(self, rel: str) -> list[str]:
        """Names (relative to `rel`) of the objects directly under `rel`."""
        try:
            if self.local:
                d = self._local(rel)
                return sorted(n for n in os.listdir(d) if not n.startswith(".tmp-")) if os.path.isdir(d) else []
            base = f"{self.prefix}/{rel}/"
            return sorted(p[len(base):] for p in self._session().list(f"{self.prefix}/{rel}")
                          if p.startswith(base) and "/" not in p[len(base):])
        except OSError as e:
            raise StorageError("table.uri", f"cannot list checkpoints {self.prefix}/{rel} of {self.loc.uri}: {e}") from None

    def delete(self, rel: str) -> None:
        """Delete an object; one that is already gone is fine (a fold may be run twice)."""
        self.delete_table_file(f"{self.prefix}/{rel}")

    def delete_table_file(self, trel: str) -> None:
        """Delete a file by its path relative to the table's root (a data file, a checkpoint)."""
        try:
            if self.local:
                os.remove(os.path.join(self.loc.uri, trel))
            else:
                self._session().delete_file(trel)
        except FileNotFoundError:
            pass
        except OSError as e:
            if not _not_found(e):
                raise StorageError("table.uri", f"cannot delete {trel} of {self.loc.uri}: {e}") from None

    def map(self, fn, items: list) -> list:
        """fn over items: in threads on an object store (each call is a network round trip),
        in a plain loop on a local disk (each call takes microseconds, a pool far more)."""
        if self.local or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(MAX_THREADS, len(items))) as pool:
            return list(pool.map(fn, items))


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _not_found(e: OSError) -> bool:
    text = str(e).lower()
    return "not found" in text or "no such file" in text or "does not exist" in text
