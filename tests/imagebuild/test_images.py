"""The images `python -m tests.imagebuild build` writes hold what the Dockerfile says.

Everything is read from the OCI archives themselves (what containerd imports): the image config
(user, entrypoint, cmd, env, ports) and the filesystem, unpacked with umoci and exercised with
the image's own python under `chroot --userspec` as the image's user. The builds share the real
cache (~/.cache/geneva-operator) through one session fixture; the code-change test builds a copy
of the repository under a scratch tag, so the real archives and tags stay as they are."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.imagebuild import build as ib
from tests.imagebuild.build import Builder, Image

pytestmark = pytest.mark.packaging

REPO = ib.REPO


def dockerfile_stage(name: str) -> list[tuple[str, str]]:
    from tests.packaging.test_dockerfile import stages

    result, _ = stages((REPO / "Dockerfile").read_text())
    return result[name]["ops"]


@pytest.fixture(scope="session")
def images() -> dict[str, Image]:
    return {img.name: img for img in ib.build_all(log=None)}


class Unpacked:
    def __init__(self, archive: Path, where: Path):
        layout, self.bundle = where / "layout", where / "bundle"
        layout.mkdir(parents=True)
        with tarfile.open(archive) as tf:
            tf.extractall(layout)
        index = json.loads((layout / "index.json").read_text())
        (desc,) = index["manifests"]
        self.ref = desc["annotations"]["org.opencontainers.image.ref.name"]
        manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
        self.image_config = json.loads(
            (layout / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text())
        self.config = self.image_config["config"]
        self.layers = manifest["layers"]
        # umoci wants a plain tag; index.json is not covered by the manifest digest
        desc["annotations"]["org.opencontainers.image.ref.name"] = "image"
        (layout / "index.json").write_text(json.dumps(index))
        subprocess.run(["umoci", "unpack", "--image", f"{layout}:image", str(self.bundle)], check=True,
                       capture_output=True)
        shutil.rmtree(layout)
        self.rootfs = self.bundle / "rootfs"

    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config.get("Env", []))

    def run(self, *argv: str, user: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """argv inside the image's filesystem, as the image's user, with the image's env only."""
        user = user or self.config.get("User") or "0:0"
        env = [f"{k}={v}" for k, v in self.env().items()]
        cwd = self.config.get("WorkingDir") or "/"
        # What a container runtime provides: /dev and /proc, here in a private mount namespace
        # that vanishes with the command.
        inner = ["chroot", f"--userspec={user}", str(self.rootfs), "/usr/bin/env", "-i", *env,
                 "/bin/sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]
        cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "/bin/sh", "-c",
               'mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec "$@"',
               str(self.rootfs), *inner]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if check:
            assert proc.returncode == 0, f"{argv}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc


@pytest.fixture(scope="session")
def unpacked(images, tmp_path_factory):
    cache: dict[str, Unpacked] = {}

    def get(name: str) -> Unpacked:
        if name not in cache:
            cache[name] = Unpacked(images[name].archive, tmp_path_factory.mktemp(f"unpacked-{name}"))
        return cache[name]

    yield get
    for u in cache.values():
        shutil.rmtree(u.bundle, ignore_errors=True)


# ---------------------------------------------------------------- names, archives


def test_names_are_what_the_chart_and_kubelet_expect(images):
    chart = yaml.safe_load((REPO / "charts" / "geneva-operator" / "Chart.yaml").read_text())
    app = chart["appVersion"]
    assert images["operator"].ref == f"ghcr.io/lancedb/geneva-operator:{app}"
    assert images["ray-worker"].ref == f"ghcr.io/lancedb/geneva-ray-worker:{app}"
    assert images["pause"].ref == "registry.k8s.io/pause:3.10"
    for img in images.values():
        assert img.archive.parent == ib.CACHE / "images" and img.archive.is_file()
        assert ib.archive_digest(img.archive) == img.digest


# ---------------------------------------------------------------- operator


def test_operator_config_is_the_dockerfiles(unpacked):
    img = unpacked("operator")
    ops = dockerfile_stage("operator")
    (entry,) = [a for op, a in ops if op == "ENTRYPOINT"]
    (cmd,) = [a for op, a in ops if op == "CMD"]
    (user,) = [a for op, a in ops if op == "USER"]
    (expose,) = [a for op, a in ops if op == "EXPOSE"]
    assert img.config["Entrypoint"] == json.loads(entry) == ["kopf", "run", "--module=geneva_operator.handlers"]
    assert img.config["Cmd"] == json.loads(cmd)
    assert img.config["User"] == user == "10001:10001"
    assert set(img.config["ExposedPorts"]) == {f"{p}/tcp" for p in expose.split()}
    env = img.env()
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["HOME"] == "/tmp" and env["PYTHONUNBUFFERED"] == "1"
    assert img.image_config["architecture"] == "amd64" and img.image_config["os"] == "linux"


def test_operator_runs_kopf_and_has_no_ray(unpacked):
    img = unpacked("operator")
    out = img.run("python", "-c",
                  "import os, importlib.util, kopf, geneva_operator, geneva_operator.handlers, sys;"
                  "print(os.getuid(), os.getgid(), sys.executable, geneva_operator.__version__);"
                  "[print(m, importlib.util.find_spec(m)) for m in ('ray', 'lancedb', 'pyarrow')]")
    first, *missing = out.stdout.splitlines()
    uid, gid, exe, version = first.split()
    assert (uid, gid) == ("10001", "10001")
    assert exe == "/opt/venv/bin/python"
    assert version == ib.app_version()
    assert all(line.endswith(" None") for line in missing if line), missing
    # the ENTRYPOINT's executable resolves on the image's PATH
    assert img.run("sh", "-c", "command -v kopf").stdout.strip() == "/opt/venv/bin/kopf"
    # nothing is owned by or writable for the runtime user outside /tmp (fits readOnlyRootFilesystem)
    assert (img.rootfs / "opt/venv").stat().st_uid == 0


# ---------------------------------------------------------------- ray-worker


def test_ray_worker_config(unpacked):
    img = unpacked("ray-worker")
    assert img.config["User"] == "1000:100"
    env = img.env()
    assert env["PATH"].split(":")[0] == "/home/ray/venv/bin"
    assert env["HOME"] == "/home/ray"
    assert img.config.get("WorkingDir") == "/home/ray"


def test_ray_worker_has_the_engine_ray_and_wget(unpacked):
    img = unpacked("ray-worker")
    out = img.run("python", "-c",
                  "import os, sys, ray, lancedb, pyarrow, geneva_operator.engine, geneva_operator.engine.job;"
                  "import ray.dashboard.dashboard, aiohttp_cors, opencensus, prometheus_client;"  # ray[default]
                  "print(os.getuid(), os.getgid(), sys.executable, ray.__version__, lancedb.__version__)")
    uid, gid, exe, ray_version, lancedb_version = out.stdout.split()
    assert (uid, gid) == ("1000", "100")
    assert exe == "/home/ray/venv/bin/python"
    assert ray_version == "2.60.0"
    assert lancedb_version.startswith("0.40")
    for tool in ("wget", "bash", "pip", "ray"):
        assert img.run("bash", "-c", f"command -v {tool}").stdout.strip(), tool
    assert "GNU Wget" in img.run("wget", "--version").stdout
    # KubeRay runs `/bin/bash -lc -- "ulimit ...; ray start ..."`: a login shell must find the env
    login = img.run("/bin/bash", "-lc", "command -v ray python pip").stdout.split()
    assert login == ["/home/ray/venv/bin/ray", "/home/ray/venv/bin/python", "/home/ray/venv/bin/pip"], login
    # `python -m geneva_operator.engine.job` is what the operator runs in the head pod
    img.run("python", "-c", "import runpy, importlib.util; assert importlib.util.find_spec('geneva_operator.engine.job')")
    # the Python env belongs to the runtime user (KubeRay's runtime_env / pip installs work)
    st = (img.rootfs / "home/ray/venv/lib").stat()
    assert (st.st_uid, st.st_gid) == (1000, 100)
    # the source copy was removed
    assert not (img.rootfs / "tmp/geneva-src").exists()


@pytest.mark.parametrize("name", ["operator", "ray-worker"])
def test_no_build_time_ca_left_behind(unpacked, name):
    """The host's CA bundle (it carries the TLS proxy's certificate) is mounted for RUN only: no
    file of the image has its content, and no empty mount point is left for pip.conf."""
    img = unpacked(name)
    host = Path("/etc/ssl/certs/ca-certificates.crt")
    if not host.is_file():
        pytest.skip("no host CA bundle was mounted")
    data, size = host.read_bytes(), host.stat().st_size
    for dirpath, _, files in os.walk(img.rootfs):
        for f in files:
            path = Path(dirpath, f)
            if not path.is_symlink() and path.stat().st_size == size:
                assert path.read_bytes() != data, f"the host CA bundle is in the image at {path}"
    conf = img.rootfs / "etc/pip.conf"
    assert "cert = /etc/ssl/certs/ca-certificates.crt" in conf.read_text()


# ---------------------------------------------------------------- pause


def test_pause_is_a_static_sandbox(unpacked):
    img = unpacked("pause")
    assert img.config["Entrypoint"] == ["/pause"]
    assert sorted(p.name for p in img.rootfs.iterdir()) == ["pause"]
    assert subprocess.run(["ldd", str(img.rootfs / "pause")], capture_output=True, text=True).returncode != 0  # static
    proc = subprocess.Popen(["chroot", str(img.rootfs), "/pause"])
    time.sleep(0.3)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=5) == 0


# ---------------------------------------------------------------- the layer cache


def test_second_build_is_all_cache_hits(images):
    again = {img.name: img for img in ib.build_all(log=None)}
    for name, img in again.items():
        assert img.cached, (name, img.rebuilt_steps)
        assert img.rebuilt_steps == []
        assert img.image_id == images[name].image_id and img.digest == images[name].digest


def _context_copy(dst: Path) -> Path:
    """The Dockerfile, .dockerignore and every source a COPY names (not COPY --from)."""
    import shlex

    from tests.packaging.test_dockerfile import stages

    result, _ = stages((REPO / "Dockerfile").read_text())
    sources = {"Dockerfile", ".dockerignore"}
    for stage in result.values():
        for op, args in stage["ops"]:
            if op == "COPY" and "--from=" not in args:
                sources.update(s.rstrip("/") for s in [a for a in shlex.split(args) if not a.startswith("--")][:-1])
    dst.mkdir()
    for name in sorted(sources):
        src, out = REPO / name, dst / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, out)
    return dst


@pytest.mark.parametrize("target", ["ray-worker", "operator"])
def test_code_change_rebuilds_only_the_project_layers(images, tmp_path, target):
    """A copy of the build context with one file under operator/ changed, built under a scratch
    tag with the real layer cache: every step before the stage's `COPY operator/` is a cache
    hit (above all the pinned-dependency install), only what follows is rebuilt."""
    ctx = _context_copy(tmp_path / "ctx")
    init = ctx / "operator" / "geneva_operator" / "__init__.py"
    init.write_text(init.read_text() + f"# changed by a test {time.time_ns()}\n")
    builder = Builder()
    tag = f"localhost/geneva-test/{target}:code-change-{os.getpid()}"
    t0 = time.monotonic()
    try:
        with builder.locked():
            _, steps = builder.bud(ctx, ctx / "Dockerfile", tag, target=target,
                                   build_args={"PYTHON_IMAGE": ib.PYTHON_BASE, "RAY_IMAGE": ib.RAY_BASE})
    finally:
        builder.buildah("rmi", tag, check=False)
    seconds = time.monotonic() - t0
    layered = [s for s in steps if s.cached is not None]
    first_code = next(i for i, s in enumerate(layered) if s.instruction.startswith("COPY") and "operator/" in s.instruction)
    before, after = layered[:first_code], layered[first_code:]
    assert all(s.cached for s in before), [s.instruction for s in before if not s.cached]
    assert any("PINS" in s.instruction for s in before), "the dependency install must come before the code"
    assert not after[0].cached
    (install,) = [s for s in after if "--no-deps" in s.instruction]
    assert not install.cached
    print(f"\n{target}: code change rebuilt {len([s for s in after if not s.cached])} steps in {seconds:.1f}s: "
          f"{[s.instruction[:60] for s in after if not s.cached]}")


# ---------------------------------------------------------------- import into containerd


@pytest.fixture
def containerd(tmp_path):
    """A throwaway containerd (CRI off: this test only stores images) with its own root, state and
    socket under tmp_path; stopped and removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))  # short path: unix socket length limit
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(
        f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
        '[debug]\n  address = ""\n[metrics]\n  address = ""\n')
    log = open(tmp_path / "containerd.log", "w")
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["ctr", "--address", str(sock), "version"], capture_output=True).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "containerd.log").read_text()
            time.sleep(0.3)
        yield str(sock)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        subprocess.run(["umount", "-R", str(d / "root")], capture_output=True)
        shutil.rmtree(d, ignore_errors=True)


def test_import_all_is_idempotent(images, containerd):
    from tests.imagebuild import import_all
    from tests.imagebuild.importer import present

    first = import_all(containerd)
    assert {i.ref for i in first} >= {img.ref for img in images.values()}
    assert not any(i.skipped for i in first)
    have = present(containerd)
    for img in images.values():
        assert have[img.ref] == img.digest, img.ref
    assert set(have) == {img.ref for img in images.values()}, "no extra names (import-<date>@...)"
    again = import_all(containerd)
    assert all(i.skipped for i in again)
    # unpacked into the default snapshotter: the first container starts without unpacking
    snaps = subprocess.run(["ctr", "--address", containerd, "-n", "k8s.io", "snapshots", "ls"],
                           capture_output=True, text=True, check=True).stdout
    assert len(snaps.splitlines()) > 1
