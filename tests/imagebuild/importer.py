"""Import the built OCI archives into a containerd (namespace k8s.io, where the CRI plugin and so
the kubelet look), skipping every image already there at the same manifest digest."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

from tests.imagebuild.build import CACHE, Image

NAMESPACE = "k8s.io"


@dataclasses.dataclass
class Imported:
    ref: str
    digest: str
    archive: Path
    skipped: bool  # already present at this digest


def present(address: str, namespace: str = NAMESPACE) -> dict[str, str]:
    """{image name: target digest} in the containerd at `address`."""
    proc = subprocess.run(["ctr", "--address", address, "-n", namespace, "images", "ls"],
                          capture_output=True, text=True, check=True)
    out = {}
    for line in proc.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 3:
            out[cols[0]] = cols[2]
    return out


def archives(cache: Path = CACHE) -> list[tuple[str, str, Path]]:
    """(ref, digest, archive) of every built archive, from the stamps the builder writes."""
    out = []
    for stamp in sorted((cache / "images").glob("*.json")):
        archive = stamp.with_suffix(".tar")
        if archive.is_file():
            meta = json.loads(stamp.read_text())
            out.append((meta["ref"], meta["digest"], archive))
    return out


def import_all(address: str, images: list[Image] | None = None, *, namespace: str = NAMESPACE,
               cache: Path = CACHE, log=None) -> list[Imported]:
    """Import `images` (default: every archive under ~/.cache/geneva-operator/images) into the
    containerd listening on `address`. Idempotent."""
    todo = ([(i.ref, i.digest, i.archive) for i in images] if images is not None else archives(cache))
    have = present(address, namespace)
    done = []
    for ref, digest, archive in todo:
        if have.get(ref) == digest:
            done.append(Imported(ref, digest, archive, True))
            continue
        if log:
            log(f"importing {ref} from {archive}")
        # --no-unpack off: unpack into the default snapshotter now, so the first pod starts fast.
        proc = subprocess.run(["ctr", "--address", address, "-n", namespace, "images", "import",
                               str(archive)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed:\n{proc.stdout}\n{proc.stderr}")
        now = present(address, namespace)
        if now.get(ref) != digest:
            raise RuntimeError(f"{ref} not present at {digest} after import: {now.get(ref)}\n{proc.stdout}")
        done.append(Imported(ref, digest, archive, False))
    return done
