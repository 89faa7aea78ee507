"""A real, local Kubernetes control plane for the tier-3 (cluster) tests.

Runs, as plain processes on 127.0.0.1 (binaries built by ``build.sh``):

* etcd (embedded-etcd build at the version Kubernetes pins),
* kube-apiserver (x509 client certs, Node,RBAC authorization, service-account
  tokens), kube-controller-manager (garbage collector, namespace, service
  account ... controllers, per-controller SA credentials), kube-scheduler,
* the KubeRay operator (with its CRDs applied first),
* either kwok, which turns Nodes annotated ``kwok.x-k8s.io/node: fake`` into simulated
  nodes and drives the pods bound to them to Running/Ready -- three kwok nodes carry the
  geneva node labels (head / cpu worker / gpu worker) --,
* or (``real_node=True``) one real node, ``node.py``: containerd, kubelet, kube-proxy and
  CoreDNS on a bridge of its own, where pods run for real. The API server then listens on the
  bridge's gateway address instead of 127.0.0.1, so that pods reach it.

Only the standard library is needed (plus ``openssl`` when ``cryptography`` is
not installed) and ``kubectl`` on PATH (or $KUBECTL).

Use ``ControlPlane(state_dir).start()`` / ``.stop()``, or the CLI
``python -m tests.controlplane up|down|status|build``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from . import hostnet
from .node import RealNode
from .pki import PKI, CertSpec

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
BUILD_SCRIPT = HERE / "build.sh"

LOOPBACK = "127.0.0.1"
STATE_FILE = "state.json"
MARKER_FILE = ".geneva-controlplane"  # marks a directory we may delete

# The geneva node labels (see the operator's scheduling rules).
HEAD_LABEL = "geneva.lancedb.com/ray-head"
CPU_LABEL = "geneva.lancedb.com/ray-worker-cpu"
GPU_LABEL = "geneva.lancedb.com/ray-worker-gpu"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


# --------------------------------------------------------------------------
# versions / binaries
# --------------------------------------------------------------------------
def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse versions.env (KEY=VALUE lines, '#' comments)."""
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out[k.strip()] = v.strip().strip('"').strip("'")
    return out


def kuberay_versions(versions: dict[str, str] | None = None) -> list[str]:
    """The KubeRay compatibility matrix (versions.env KUBERAY_VERSIONS), oldest first; the last
    is the default KubeRay of a control plane."""
    v = versions or read_versions()
    return [x.strip() for x in v["KUBERAY_VERSIONS"].split(",") if x.strip()]


def cache_dir() -> Path:
    return Path(os.environ.get("GENEVA_CACHE", Path.home() / ".cache" / "geneva-operator"))


def default_state_dir() -> Path:
    """Where ``python -m tests.controlplane up`` keeps its cluster by default."""
    return Path(os.environ.get("GENEVA_CLUSTER_STATE", cache_dir() / "cluster"))


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    ray_operator: Path
    kuberay_crds: Path  # directory of CRD yaml files
    kwok: Path
    kwok_stages: Path  # directory of kwok Stage yaml files
    helm: Path
    kubelet: Path
    kube_proxy: Path
    coredns: Path

    @classmethod
    def from_cache(cls, bindir: Path | None = None, versions: dict[str, str] | None = None,
                   kuberay_version: str | None = None) -> "Binaries":
        """The pinned binaries; KubeRay `kuberay_version` (one of KUBERAY_VERSIONS; default the newest)."""
        v = versions or read_versions()
        b = bindir or cache_dir() / "bin"
        k8s = b / f"kubernetes-{v['KUBERNETES_VERSION']}"
        kuberay = b / f"kuberay-{kuberay_version or kuberay_versions(v)[-1]}"
        kwok = b / f"kwok-{v['KWOK_VERSION']}"
        node = b / f"kubernetes-node-{v['KUBERNETES_VERSION']}"
        return cls(
            etcd=b / f"etcd-{v['ETCD_VERSION']}" / "etcd",
            kube_apiserver=k8s / "kube-apiserver",
            kube_controller_manager=k8s / "kube-controller-manager",
            kube_scheduler=k8s / "kube-scheduler",
            ray_operator=kuberay / "ray-operator",
            kuberay_crds=kuberay / "crds",
            kwok=kwok / "kwok",
            kwok_stages=kwok / "stages",
            helm=b / f"helm-{v['HELM_VERSION']}" / "helm",
            kubelet=node / "kubelet",
            kube_proxy=node / "kube-proxy",
            coredns=b / f"coredns-{v['COREDNS_VERSION']}" / "coredns",
        )

    NODE_ONLY = ("kubelet", "kube_proxy", "coredns")

    def missing(self, real_node: bool = True) -> list[Path]:
        return [p for k, p in vars(self).items() if (real_node or k not in self.NODE_ONLY) and not p.exists()]


def build(components: Sequence[str] = (), check: bool = True) -> subprocess.CompletedProcess:
    """Run build.sh (idempotent: seconds when everything is cached)."""
    return subprocess.run(["bash", str(BUILD_SCRIPT), *components], check=check)


def ensure_built(real_node: bool = True, kuberay_version: str | None = None) -> Binaries:
    bins = Binaries.from_cache(kuberay_version=kuberay_version)
    if bins.missing(real_node):
        build()
        bins = Binaries.from_cache(kuberay_version=kuberay_version)
        if bins.missing(real_node):
            raise RuntimeError(f"build.sh did not produce {bins.missing(real_node)}")
    return bins


def ensure_oldest_apiserver() -> Path:
    """The kube-apiserver of the oldest Kubernetes the chart claims (and the etcd it runs on)."""
    path = cache_dir() / "bin" / f"kube-apiserver-{read_versions()['OLDEST_KUBERNETES_VERSION']}" / "kube-apiserver"
    if not (path.exists() and Binaries.from_cache().etcd.exists()):
        build(["etcd", "kubernetes-oldest"])
    return path


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------
class KubectlError(RuntimeError):
    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess):
        self.result = result
        super().__init__(
            f"kubectl {' '.join(args)} exited {result.returncode}:\n"
            f"{(result.stderr or '').strip()}\n{(result.stdout or '').strip()}".rstrip()
        )


def kubectl_binary() -> str:
    return os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(what: str, check: Callable[[], object], timeout: float, interval: float = 0.25,
               on_timeout: Callable[[], str] | None = None):
    """Poll ``check`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = check()
            if result:
                return result
        except ProcessExited:
            raise
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last one
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                               f"{f' (last error: {last_exc})' if last_exc else ''}{extra}")
        time.sleep(interval)


class ProcessExited(RuntimeError):
    pass


def wait_for_liveness(proc: subprocess.Popen, url: str, timeout: float, interval: float = 0.3,
                      log_tail: Callable[[], str] = lambda: "") -> None:
    """Wait until `url` answers 200 (an operator's /healthz); fail at once if `proc` exits."""
    def live() -> bool:
        if proc.poll() is not None:
            raise ProcessExited(f"process exited with {proc.returncode}:\n{log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    wait_until(f"liveness of {url}", live, timeout, interval=interval, on_timeout=lambda: "\n" + log_tail())


def remove_state_dir(path: Path | str) -> bool:
    """Delete a control-plane state dir -- only if it is one (or empty)."""
    path = Path(path)
    if not path.exists():
        return True
    if (path / MARKER_FILE).exists() or not any(path.iterdir()):
        shutil.rmtree(path, ignore_errors=True)
        return True
    return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --------------------------------------------------------------------------
# a cluster reached through a kubeconfig
# --------------------------------------------------------------------------
class Cluster:
    """Anything reachable through an admin kubeconfig (ours or an external one)."""

    def __init__(self, kubeconfig: Path):
        self.kubeconfig = Path(kubeconfig)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120, kubeconfig: Path | str | None = None,
                extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run kubectl against this cluster; raise KubectlError (with stderr) on failure."""
        cmd = [kubectl_binary(), "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        env.update(extra_env or {})
        res = subprocess.run(cmd, input=input, capture_output=True, text=True,
                             timeout=timeout, env=env)
        if check and res.returncode != 0:
            raise KubectlError(args, res)
        return res

    def kubectl_json(self, *args: str, **kw) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json", **kw).stdout)

    def apply(self, manifest: str | dict | list, *extra: str) -> subprocess.CompletedProcess:
        if not isinstance(manifest, str):
            items = manifest if isinstance(manifest, list) else [manifest]
            manifest = json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        return self.kubectl("apply", "-f", "-", *extra, input=manifest)

    def _raw_config(self) -> dict:
        return self.kubectl_json("config", "view", "--raw", "--minify")

    @property
    def server(self) -> str:
        return self._raw_config()["clusters"][0]["cluster"]["server"]

    def ca_pem(self) -> bytes:
        c = self._raw_config()["clusters"][0]["cluster"]
        if "certificate-authority-data" in c:
            return base64.b64decode(c["certificate-authority-data"])
        return Path(c["certificate-authority"]).read_bytes()

    def healthy(self, timeout: float = 5) -> bool:
        try:
            res = self.kubectl("get", "--raw", "/readyz", check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return res.returncode == 0 and res.stdout.strip() == "ok"

    def wait_established(self, *crds: str, timeout: float = 60) -> None:
        """Wait until every named CRD reports Established.

        Not `kubectl wait --for=condition=Established`: a CRD created a moment
        ago may have no `status.conditions` yet, and kubectl then fails at once
        ("<nil> is of the type <nil>") instead of waiting.
        """
        def established() -> bool:
            res = self.kubectl("get", "crd", *crds, "-o", "json", check=False)
            if res.returncode != 0:
                return False
            doc = json.loads(res.stdout)
            status = {
                item["metadata"]["name"]: {
                    c["type"]: c["status"] for c in (item.get("status") or {}).get("conditions") or []
                }.get("Established")
                for item in doc.get("items", [doc])
            }
            return all(status.get(c) == "True" for c in crds)

        wait_until(f"CRDs established: {', '.join(crds)}", established, timeout)

    def token_kubeconfig(self, token: str, path: Path) -> Path:
        """Write a kubeconfig that authenticates with ``token`` only (no client cert)."""
        cfg = _kubeconfig(self.server, self.ca_pem(), "token-user", {"token": token})
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)
        return path


def _kubeconfig(server: str, ca_pem: bytes, user: str, creds: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "geneva-local", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": creds}],
        "contexts": [{"name": "geneva-local", "context": {"cluster": "geneva-local", "user": user}}],
        "current-context": "geneva-local",
    }


# --------------------------------------------------------------------------
# the control plane
# --------------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    pid: int
    binary: str
    log: str
    popen: subprocess.Popen | None = None

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            return False
        # guard against pid reuse: it must still be our binary
        return cmdline == self.binary


class ControlPlane(Cluster):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + KubeRay + kwok or a real node."""

    # Service ClusterIPs (the benchmarking range: never a real network's). With kwok nothing
    # routes them, nor kwok's pod IPs, which are kept in the loopback range so that a mistaken
    # dial stays on this machine; with a real node kube-proxy serves them (hostnet.py).
    SERVICE_CIDR = hostnet.SERVICE_CIDR
    POD_CIDR = "127.64.0.0/16"
    SA_ISSUER = "https://kubernetes.default.svc.cluster.local"

    NODES = (
        ("ray-head-0", {HEAD_LABEL: "true"}, {}),
        ("ray-cpu-0", {CPU_LABEL: "true"}, {}),
        ("ray-gpu-0", {GPU_LABEL: "true"}, {"nvidia.com/gpu": "2"}),
    )

    # The labels of the real node: it takes the head and the CPU workers (no GPU here).
    REAL_NODE_LABELS = {HEAD_LABEL: "true", CPU_LABEL: "true"}

    def __init__(self, state_dir: Path | str | None = None, binaries: Binaries | None = None,
                 start_timeout: float = 180, real_node: bool = False, kuberay_version: str | None = None):
        self._own_tmp = state_dir is None
        self.real_node = real_node
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="geneva-cp-"))
        super().__init__(self.state_dir / "admin.kubeconfig")
        self.bins = binaries
        self.kuberay_version = kuberay_version  # None: the newest of KUBERAY_VERSIONS
        self.start_timeout = start_timeout
        self.procs: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}
        self.pki = PKI(self.state_dir / "pki")
        self.logs = self.state_dir / "logs"
        self.node = RealNode(self, self.REAL_NODE_LABELS) if real_node else None

    @property
    def host_ip(self) -> str:
        """Where the API server listens: loopback, or the node bridge's gateway so pods reach it."""
        return hostnet.GATEWAY if self.real_node else LOOPBACK

    # ---- state file ------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / STATE_FILE

    def _save_state(self) -> None:
        state = {
            "kubeconfig": str(self.kubeconfig),
            "server": f"https://{self.host_ip}:{self.ports.get('apiserver')}",
            "real_node": self.real_node,
            "kuberay_version": self.kuberay_version or kuberay_versions()[-1],
            "ports": self.ports,
            "startup_timings_s": getattr(self, "timings", {}),
            "processes": [
                {"name": p.name, "pid": p.pid, "binary": p.binary, "log": p.log}
                for p in self.procs.values()
            ],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def attach(cls, state_dir: Path | str) -> "ControlPlane":
        """Re-open a control plane started earlier (e.g. by ``up``) from its state file."""
        state = json.loads((Path(state_dir) / STATE_FILE).read_text())
        cp = cls(state_dir, real_node=state.get("real_node", False), kuberay_version=state.get("kuberay_version"))
        cp.ports = state["ports"]
        cp.procs = {p["name"]: Proc(**p) for p in state["processes"]}
        return cp

    # ---- lifecycle -------------------------------------------------------
    def start(self) -> "ControlPlane":
        t0 = time.monotonic()
        if self.bins is None:
            self.bins = ensure_built(self.real_node, self.kuberay_version)
        missing = self._missing_binaries()
        if missing:
            raise RuntimeError(f"missing binaries {missing}; run tests/controlplane/build.sh")
        self.logs.mkdir(parents=True, exist_ok=True)
        (self.state_dir / MARKER_FILE).write_text("state dir of tests/controlplane; safe to delete\n")
        self.timings: dict[str, float] = {}
        try:
            for step in self._steps():
                t = time.monotonic()
                step()
                self.timings[step.__name__.lstrip("_")] = round(time.monotonic() - t, 2)
        except BaseException:
            self._save_state()
            self.stop(remove_state=False)
            raise
        self._save_state()
        self.startup_seconds = time.monotonic() - t0
        return self

    def _missing_binaries(self) -> list[Path]:
        return self.bins.missing(self.real_node)

    def _steps(self) -> list[Callable[[], None]]:
        steps = [self._pki, self._start_etcd, self._start_apiserver, self._start_controller_manager,
                 self._start_scheduler, self._install_kuberay_crds, self._start_kuberay]
        if self.node:
            steps = [self.node.prepare_host, *steps, self.node.start]
        else:
            steps += [self._start_kwok, self._create_nodes]
        return [*steps, self._wait_for_system]

    def stop(self, remove_state: bool | None = None, timeout: float = 15) -> None:
        """Terminate every component (whole process groups); remove the state dir.

        ``remove_state`` defaults to True for a temp dir we created and to
        False for a caller-provided one (its logs stay for debugging) --
        except that ``down`` removes it explicitly.
        """
        procs = list(self.procs.values())
        for p in reversed(procs):  # kwok, kuberay, ... etcd last
            self._signal(p, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in reversed(procs):
            while p.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            if p.alive():
                self._signal(p, signal.SIGKILL)
            if p.popen is not None:
                try:
                    p.popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs.clear()
        if self.node:
            self.node.stop()
        if remove_state is None:
            remove_state = self._own_tmp
        if remove_state:
            remove_state_dir(self.state_dir)
        elif self.state_file.exists():
            self.state_file.unlink()

    @staticmethod
    def _signal(p: Proc, sig: int) -> None:
        if not p.alive():
            return
        try:
            os.killpg(p.pid, sig)  # each component leads its own process group
        except ProcessLookupError:
            pass

    def running(self) -> bool:
        return bool(self.procs) and all(p.alive() for p in self.procs.values())

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- processes -------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Proc:
        log = self.logs / f"{name}.log"
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.state_dir, env={**os.environ, **(env or {})},
                start_new_session=True,  # own process group: killpg on stop; survives `up`
            )
        (self.logs / f"{name}.cmd").write_text(" ".join(cmd) + "\n")
        proc = Proc(name, popen.pid, cmd[0], str(log), popen)
        self.procs[name] = proc
        self._save_state()
        return proc

    def _wait(self, name: str, what: str, check: Callable[[], object], timeout: float | None = None):
        proc = self.procs.get(name)

        def guarded():
            if proc is not None and not proc.alive():
                raise ProcessExited(f"{name} exited; last log lines:\n{_tail(Path(proc.log))}")
            return check()

        return wait_until(f"{name}: {what}", guarded, timeout or self.start_timeout,
                          on_timeout=lambda: f"\n{name} log tail:\n{_tail(Path(proc.log))}" if proc else "")

    # ---- PKI and kubeconfigs ---------------------------------------------
    def _pki(self) -> None:
        pki = self.pki
        pki.create_ca()
        pki.issue(CertSpec(
            "apiserver", "kube-apiserver", server=True,
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                       "kubernetes.default.svc.cluster.local"],
            # The first Service address: the `kubernetes` Service pods reach the API server by.
            ip_addresses=list(dict.fromkeys([LOOPBACK, self.host_ip, hostnet.KUBERNETES_SERVICE_IP])),
        ))
        users = {
            "admin": ("kubernetes-admin", ["system:masters"]),
            "controller-manager": ("system:kube-controller-manager", []),
            "scheduler": ("system:kube-scheduler", []),
            # KubeRay and kwok run as cluster admins here (see README: RBAC).
            "kuberay": ("kuberay-operator", ["system:masters"]),
            "kwok": ("kwok-controller", ["system:masters"]),
        }
        for name, (cn, orgs) in users.items():
            pki.issue(CertSpec(name, cn, orgs, client=True))
        if self.node:
            self.node.issue_certificates()
        pki.create_keypair("sa")
        self.ports["apiserver"] = free_port(self.host_ip)
        for name in users:
            self.write_client_kubeconfig(name, self._kubeconfig_path(name))

    def write_client_kubeconfig(self, user: str, path: Path) -> Path:
        """A kubeconfig that authenticates as `user` with its client certificate from our PKI."""
        cfg = _kubeconfig(f"https://{self.host_ip}:{self.ports['apiserver']}", self.pki.ca_crt.read_bytes(), user, {
            "client-certificate-data": base64.b64encode(self.pki.crt(user).read_bytes()).decode(),
            "client-key-data": base64.b64encode(self.pki.key(user).read_bytes()).decode(),
        })
        path.write_text(json.dumps(cfg, indent=2))
        path.chmod(0o600)
        return path

    def _kubeconfig_path(self, user: str) -> Path:
        return self.kubeconfig if user == "admin" else self.state_dir / f"{user}.kubeconfig"

    def _https_get(self, url: str, authenticated: bool = True, timeout: float = 5) -> tuple[int, str]:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
        if authenticated:
            ctx.load_cert_chain(self.pki.crt("admin"), self.pki.key("admin"))
        else:  # kcm/scheduler serve self-signed certs; /healthz is anonymous
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    @staticmethod
    def _http_get(url: str, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")

    # ---- components ------------------------------------------------------
    def _start_etcd(self) -> None:
        client, peer = free_port(), free_port()
        self.ports.update(etcd=client, etcd_peer=peer)
        c, p = f"http://{LOOPBACK}:{client}", f"http://{LOOPBACK}:{peer}"
        self._spawn("etcd", [
            str(self.bins.etcd),
            "--name=default",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={c}", f"--advertise-client-urls={c}",
            f"--listen-peer-urls={p}", f"--initial-advertise-peer-urls={p}",
            f"--initial-cluster=default={p}",
            "--unsafe-no-fsync",  # test data: speed over durability
            "--log-level=warn",
        ])
        self._wait("etcd", "/health", lambda: json.loads(self._http_get(f"{c}/health")[1])["health"] == "true")

    def _start_apiserver(self) -> None:
        pki = self.pki
        port = self.ports["apiserver"]
        if self.node:
            # The `kubernetes` Service's endpoint is the bridge address: kept by the lease
            # reconciler, like a real cluster's; kubelets are reached by their InternalIP
            # (the host's resolver knows no node names).
            node_flags = [
                "--kubelet-preferred-address-types=InternalIP",
                f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
            ]
        else:
            # The 'kubernetes' Service would get 127.0.0.1 as its endpoint,
            # which Endpoints validation rejects (loopback): don't reconcile it.
            node_flags = ["--endpoint-reconciler-type=none"]
        self._spawn("kube-apiserver", [
            str(self.bins.kube_apiserver),
            f"--etcd-servers=http://{LOOPBACK}:{self.ports['etcd']}",
            f"--bind-address={self.host_ip}", f"--advertise-address={self.host_ip}", f"--secure-port={port}",
            f"--tls-cert-file={pki.crt('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.ca_crt}",
            # Only so that the extension-apiserver-authentication ConfigMap is
            # complete (else kcm/scheduler log errors about it); nobody proxies.
            f"--requestheader-client-ca-file={pki.ca_crt}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            "--authorization-mode=Node,RBAC",
            f"--service-account-issuer={self.SA_ISSUER}",
            f"--service-account-key-file={self.state_dir / 'pki' / 'sa.pub'}",
            f"--service-account-signing-key-file={pki.key('sa')}",
            f"--service-cluster-ip-range={self.SERVICE_CIDR}",
            *node_flags,
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ])
        self._wait("kube-apiserver", "/readyz",
                   lambda: self._https_get(f"https://{self.host_ip}:{port}/readyz")[0] == 200)

    def _start_controller_manager(self) -> None:
        self._start_kube_component("controller-manager", self.bins.kube_controller_manager, [
            "--use-service-account-credentials=true",
            f"--root-ca-file={self.pki.ca_crt}",
            f"--service-account-private-key-file={self.pki.key('sa')}",
            f"--cluster-signing-cert-file={self.pki.ca_crt}",
            f"--cluster-signing-key-file={self.pki.key('ca')}",
            f"--service-cluster-ip-range={self.SERVICE_CIDR}",
            "--controllers=*",  # incl. garbage-collector, namespace, serviceaccount(-token)
        ])

    def _start_scheduler(self) -> None:
        self._start_kube_component("scheduler", self.bins.kube_scheduler, [])

    def _start_kube_component(self, user: str, binary: Path, flags: list[str]) -> None:
        """kube-<user> on loopback with its own kubeconfig for API access and delegated authn/z,
        no leader election, until its /healthz answers."""
        kc = self._kubeconfig_path(user)
        self.ports[user.replace("-", "_")] = port = free_port()
        name = f"kube-{user}"
        self._spawn(name, [
            str(binary),
            f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
            f"--bind-address={LOOPBACK}", f"--secure-port={port}",
            *flags,
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ])
        self._wait(name, "/healthz",
                   lambda: self._https_get(f"https://{LOOPBACK}:{port}/healthz", authenticated=False)[0] == 200)

    def _install_kuberay_crds(self) -> None:
        files = sorted(self.bins.kuberay_crds.glob("*.yaml"))
        # `create`: the CRDs are too big for client-side apply's last-applied
        # annotation, and server-side apply of ~3 MB of schema is slow.
        args = ["create"]
        for f in files:
            args += ["-f", str(f)]
        self.kubectl(*args)
        self.wait_established(*[f"{f.name.split('_', 1)[1].removesuffix('.yaml')}.ray.io" for f in files])

    def _start_kuberay(self) -> None:
        metrics, probe = free_port(), free_port()
        self.ports.update(kuberay_metrics=metrics, kuberay_probe=probe)
        self._spawn("kuberay-operator", [
            str(self.bins.ray_operator),
            f"--metrics-addr={LOOPBACK}:{metrics}",
            f"--health-probe-bind-address={LOOPBACK}:{probe}",
            "--enable-leader-election=false",
            "--log-stdout-encoder=console",
        ], env={"KUBECONFIG": str(self._kubeconfig_path("kuberay"))})
        self._wait("kuberay-operator", "/readyz",
                   lambda: self._http_get(f"http://{LOOPBACK}:{probe}/readyz")[0] == 200)

    def _start_kwok(self) -> None:
        self.ports["kwok"] = port = free_port()
        stages: list[str] = []
        for f in sorted(self.bins.kwok_stages.glob("*.yaml")):
            stages += ["--config", str(f)]
        self._spawn("kwok", [
            str(self.bins.kwok),
            f"--kubeconfig={self._kubeconfig_path('kwok')}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            f"--server-address={LOOPBACK}:{port}",
            # Node InternalIP/kubelet port point at kwok's own server on
            # loopback, so nothing (e.g. apiserver -> "kubelet") leaves the host.
            f"--node-ip={LOOPBACK}",
            f"--node-port={port}",
            f"--cidr={self.POD_CIDR}",
            *stages,
        ], env={"KUBECONFIG": str(self._kubeconfig_path("kwok"))})
        self._wait("kwok", "/healthz", lambda: self._http_get(f"http://{LOOPBACK}:{port}/healthz")[0] == 200)

    def node_manifests(self) -> list[dict]:
        nodes = []
        for name, labels, extra in self.NODES:
            resources = {"cpu": "64", "memory": "256Gi", "pods": "110", "ephemeral-storage": "1Ti", **extra}
            nodes.append({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    "labels": {
                        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64", "type": "kwok", **labels,
                    },
                },
                "spec": {},
                "status": {
                    "capacity": resources,
                    "allocatable": resources,  # kwok's node-initialize fills in the rest
                },
            })
        return nodes

    def _create_nodes(self) -> None:
        self.apply(self.node_manifests())
        names = [f"node/{n[0]}" for n in self.NODES]
        self._wait("kwok", "nodes Ready",
                   lambda: self.kubectl("wait", "--for=condition=Ready", "--timeout=10s", *names,
                                        check=False).returncode == 0)

    def _wait_for_system(self) -> None:
        # The serviceaccount controller must have created 'default' SAs
        # before pods can be admitted in a namespace.
        self._wait("kube-controller-manager", "default service account",
                   lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default",
                                        check=False).returncode == 0)


class ApiServerOnly(ControlPlane):
    """etcd and one kube-apiserver, on loopback: no controllers, scheduler, nodes or KubeRay.

    Enough to see what an API server admits (CRDs, CEL rules, a chart's objects) and cheap to
    start beside another control plane, for a kube-apiserver of another version than the
    pinned one (``apiserver``; etcd stays the pinned one)."""

    def __init__(self, apiserver: Path, state_dir: Path | str | None = None, start_timeout: float = 180):
        super().__init__(state_dir, replace(Binaries.from_cache(), kube_apiserver=apiserver), start_timeout)

    def _missing_binaries(self) -> list[Path]:
        return [p for p in (self.bins.etcd, self.bins.kube_apiserver) if not p.exists()]

    def _steps(self) -> list[Callable[[], None]]:
        return [self._pki, self._start_etcd, self._start_apiserver]
