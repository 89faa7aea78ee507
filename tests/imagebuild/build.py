"""Daemonless, registry-free image builds from the project's own Dockerfile.

The chain (each link cached; nothing is rebuilt unless its inputs change):

    debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) -> rootfs.tar
    bases/python.Dockerfile  (FROM scratch, ADD rootfs.tar)        -> localhost/geneva-base/python:3.11-bookworm
    bases/ray.Dockerfile     (user ray 1000:100, venv, ray[default]) -> localhost/geneva-base/ray:2.60.0-py311
    Dockerfile --target operator   (PYTHON_IMAGE=python base)       -> ghcr.io/lancedb/geneva-operator:<appVersion>
    Dockerfile --target ray-worker (RAY_IMAGE=ray base)             -> ghcr.io/lancedb/geneva-ray-worker:<appVersion>
    pause/Dockerfile (static pause.c)                               -> registry.k8s.io/pause:3.10

Builds run `buildah bud --isolation chroot --layers` with its storage under
~/.cache/geneva-operator/containers, so buildah's layer cache (keyed by each instruction and the
content it copies) is the cache. Each image is written as an OCI archive to
~/.cache/geneva-operator/images/<name>.tar; an archive is rewritten only when the image ID changes.

pip inside RUN reaches PyPI through the host's TLS-intercepting proxy: the host CA bundle and a
is bind-mounted over the image's own for RUN only (`buildah bud -v`), so it never lands in a layer
(the python base's /etc/pip.conf points pip at the system bundle).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("GENEVA_IMAGE_CACHE", Path.home() / ".cache" / "geneva-operator"))
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
INCLUDE = ("python3", "python3-venv", "ca-certificates")
RAY_VERSION = "2.60.0"

PYTHON_BASE = "localhost/geneva-base/python:3.11-bookworm"
RAY_BASE = f"localhost/geneva-base/ray:{RAY_VERSION}-py311"
PAUSE_REF = "registry.k8s.io/pause:3.10"


def app_version() -> str:
    text = (REPO / "charts" / "geneva-operator" / "Chart.yaml").read_text()
    m = re.search(r"^appVersion:\s*\"?([^\"\s]+)\"?", text, flags=re.M)
    assert m, "appVersion missing from Chart.yaml"
    return m.group(1)


def operator_ref() -> str:
    return f"ghcr.io/lancedb/geneva-operator:{app_version()}"


def ray_worker_ref() -> str:
    return f"ghcr.io/lancedb/geneva-ray-worker:{app_version()}"


@dataclasses.dataclass
class Step:
    instruction: str
    cached: bool | None  # None: a step that makes no layer (FROM)


@dataclasses.dataclass
class Image:
    name: str            # operator | ray-worker | pause
    ref: str             # the name the chart / kubelet expects
    archive: Path        # OCI archive (oci-archive, gzip layers)
    cached: bool         # True: no layer was rebuilt and the archive was already current
    image_id: str
    digest: str          # manifest digest inside the archive (what containerd records)
    steps: list[Step]
    seconds: float

    @property
    def rebuilt_steps(self) -> list[str]:
        return [s.instruction for s in self.steps if s.cached is False]


@dataclasses.dataclass
class Builder:
    """One storage root, one archive directory. The defaults are the shared cache; tests give a
    scratch cache (and a scratch repo) to check layer reuse without touching it."""

    cache: Path = CACHE
    repo: Path = REPO
    log: object = None  # a callable taking a line, or None for quiet

    @property
    def storage(self) -> Path:
        return self.cache / "containers"

    @property
    def images_dir(self) -> Path:
        return self.cache / "images"

    @property
    def work(self) -> Path:
        return self.cache / "imagebuild"

    def _say(self, line: str) -> None:
        if self.log:
            self.log(line)

    # ------------------------------------------------------------------ plumbing

    def _env(self) -> dict[str, str]:
        # A clean environment: the host's PIP_*, REQUESTS_CA_BUNDLE... must not leak into builds.
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(Path.home()),
                "LANG": "C.UTF-8", "TMPDIR": str(self.work / "tmp")}

    def buildah(self, *args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
        (self.work / "tmp").mkdir(parents=True, exist_ok=True)
        cmd = ["buildah", "--root", str(self.storage), "--runroot", str(self.cache / "containers-run"),
               "--storage-driver", "overlay", *args]
        proc = subprocess.run(cmd, env=self._env(), text=True, capture_output=capture)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{(proc.stdout or '')[-6000:]}\n"
                               f"{(proc.stderr or '')[-6000:]}")
        return proc

    def image_id(self, ref: str) -> str | None:
        proc = self.buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None

    @contextlib.contextmanager
    def locked(self):
        self.work.mkdir(parents=True, exist_ok=True)
        with open(self.work / "lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def _pip_mounts(self) -> list[str]:
        """The host CA bundle over the image's own (bases/pip.conf points pip at it), for RUN
        only. Only an existing file is covered: a new mount point would stay in the layer."""
        return ["-v", f"{HOST_CA}:{HOST_CA}:ro"] if HOST_CA.is_file() else []

    def bud(self, context: Path, dockerfile: Path, ref: str, *, target: str | None = None,
            build_args: dict[str, str] | None = None) -> tuple[str, list[Step]]:
        iid = self.work / "tmp" / f"iid-{os.getpid()}-{time.monotonic_ns()}"
        args = ["bud", "--isolation", "chroot", "--layers", "--pull=never", "--network", "host",
                "--iidfile", str(iid), "-f", str(dockerfile), "-t", ref, *self._pip_mounts()]
        if target:
            args += ["--target", target]
        for k, v in (build_args or {}).items():
            args += ["--build-arg", f"{k}={v}"]
        proc = self.buildah(*args, str(context))
        steps = parse_steps(proc.stdout)
        image_id = iid.read_text().strip().removeprefix("sha256:")
        iid.unlink()
        return image_id, steps

    # ------------------------------------------------------------------ the debootstrap rootfs

    def rootfs_tar(self) -> tuple[Path, bool]:
        key = hashlib.sha256(json.dumps([SUITE, "minbase", INCLUDE, MIRROR, 1]).encode()).hexdigest()[:16]
        tar = self.work / f"rootfs-{SUITE}-{key}.tar"
        if tar.is_file():
            return tar, True
        root = self.work / f"debootstrap-{SUITE}-{key}"
        if not (root / ".geneva-complete").is_file():
            shutil.rmtree(root, ignore_errors=True)
            self._say(f"debootstrap {SUITE} -> {root} (a few minutes)")
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(INCLUDE)}", SUITE,
                            str(root), MIRROR], check=True, env=self._env(), capture_output=True, text=True)
            (root / ".geneva-complete").touch()
        # what python:3.11-slim has and the Dockerfile's steps use: `python` on PATH
        (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
        py = root / "usr/local/bin/python"
        if not py.is_symlink():
            py.symlink_to("/usr/bin/python3")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (root / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        for p in ("etc/resolv.conf", "etc/hostname"):
            (root / p).unlink(missing_ok=True)
        partial = tar.with_suffix(".partial")
        excluded = {"./dev/", "./proc/", "./sys/", "./.geneva-complete"}

        def keep(info: tarfile.TarInfo):
            name = info.name
            if any(name.startswith(e) and name != e.rstrip("/") for e in excluded) or name == "./.geneva-complete":
                return None
            return info

        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tf:
            tf.add(str(root), arcname=".", filter=keep)
        partial.rename(tar)
        shutil.rmtree(root, ignore_errors=True)
        return tar, False

    # ------------------------------------------------------------------ bases

    def python_base(self) -> list[Step]:
        tar, _ = self.rootfs_tar()
        ctx = self.work / "ctx-python"
        ctx.mkdir(parents=True, exist_ok=True)
        link = ctx / "rootfs.tar"
        if not link.exists() or link.stat().st_ino != tar.stat().st_ino:
            link.unlink(missing_ok=True)
            os.link(tar, link)
        shutil.copy2(HERE / "bases" / "python.Dockerfile", ctx / "Dockerfile")
        shutil.copy2(HERE / "bases" / "pip.conf", ctx / "pip.conf")
        _, steps = self.bud(ctx, ctx / "Dockerfile", PYTHON_BASE)
        return steps

    def ray_base(self) -> list[Step]:
        ctx = self.work / "ctx-ray"
        ctx.mkdir(parents=True, exist_ok=True)
        _, steps = self.bud(ctx, HERE / "bases" / "ray.Dockerfile", RAY_BASE,
                            build_args={"PYTHON_BASE": PYTHON_BASE, "RAY_VERSION": RAY_VERSION})
        return steps

    # ------------------------------------------------------------------ images

    def _finish(self, name: str, ref: str, image_id: str, steps: list[Step], t0: float) -> Image:
        self.images_dir.mkdir(parents=True, exist_ok=True)
        archive = self.images_dir / f"{name}.tar"
        stamp = archive.with_suffix(".json")
        meta = json.loads(stamp.read_text()) if stamp.is_file() else {}
        current = archive.is_file() and meta.get("image_id") == image_id and meta.get("ref") == ref
        if not current:
            partial = archive.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            # (gzip layers: buildah 1.28 and skopeo ignore --disable-compression for oci-archive)
            self.buildah("push", "--quiet", ref, f"oci-archive:{partial}:{ref}")
            partial.rename(archive)
            meta = {"image_id": image_id, "ref": ref, "digest": archive_digest(archive)}
            stamp.write_text(json.dumps(meta))
        cached = current and all(s.cached is not False for s in steps)
        return Image(name=name, ref=ref, archive=archive, cached=cached, image_id=image_id,
                     digest=meta["digest"], steps=steps, seconds=round(time.monotonic() - t0, 1))

    def build_pause(self) -> Image:
        t0 = time.monotonic()
        ctx = self.work / "ctx-pause"
        ctx.mkdir(parents=True, exist_ok=True)
        src = HERE / "pause" / "pause.c"
        digest = hashlib.sha256(src.read_bytes()).hexdigest()
        binary, stamp = ctx / "pause", ctx / "pause.src-sha256"
        if not binary.is_file() or not stamp.is_file() or stamp.read_text() != digest:
            subprocess.run(["gcc", "-static", "-Os", "-o", str(binary), str(src)], check=True, env=self._env())
            subprocess.run(["strip", str(binary)], check=True)
            os.utime(binary, (0, 0))
            stamp.write_text(digest)
        shutil.copy2(HERE / "pause" / "Dockerfile", ctx / "Dockerfile")
        image_id, steps = self.bud(ctx, ctx / "Dockerfile", PAUSE_REF)
        return self._finish("pause", PAUSE_REF, image_id, steps, t0)

    def build_target(self, target: str, ref: str) -> Image:
        t0 = time.monotonic()
        steps = self.python_base()
        if target == "ray-worker":
            steps += self.ray_base()
        image_id, own = self.bud(self.repo, self.repo / "Dockerfile", ref, target=target,
                                 build_args={"PYTHON_IMAGE": PYTHON_BASE, "RAY_IMAGE": RAY_BASE})
        return self._finish(target, ref, image_id, steps + own, t0)

    def build(self, only: str | None = None) -> list[Image]:
        plan = {"operator": lambda: self.build_target("operator", operator_ref()),
                "ray-worker": lambda: self.build_target("ray-worker", ray_worker_ref()),
                "pause": self.build_pause}
        if only and only not in plan:
            raise ValueError(f"unknown image {only!r}: one of {', '.join(plan)}")
        out = []
        with self.locked():
            for name, fn in plan.items():
                if only and name != only:
                    continue
                self._say(f"building {name}")
                out.append(fn())
        return out


def parse_steps(output: str) -> list[Step]:
    """buildah's `[stage/stages] STEP n/m: INSTRUCTION` lines; a step is cached when buildah says `--> Using cache`."""
    steps: list[Step] = []
    for line in output.splitlines():
        m = re.match(r"(?:\[\d+/\d+\] )?STEP \d+/\d+: (.*)", line)
        if m:
            instr = m.group(1)
            steps.append(Step(instr, None if instr.upper().startswith("FROM ") else False))
        elif line.startswith("--> Using cache") and steps and steps[-1].cached is not None:
            steps[-1].cached = True
    return steps


def archive_digest(archive: Path) -> str:
    with tarfile.open(archive) as tf:
        index = json.load(tf.extractfile("index.json"))
    (manifest,) = index["manifests"]
    return manifest["digest"]


def build_all(only: str | None = None, log=print) -> list[Image]:
    """Build (or reuse) every image into ~/.cache/geneva-operator/images/ and return them."""
    return Builder(log=log).build(only)
