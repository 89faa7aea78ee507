"""One real Kubernetes node for the pods tier: containerd + runc + CNI, kubelet, kube-proxy, CoreDNS.

Everything runs on the host as plain processes started by the control plane (no systemd here),
with its files under ``<state-dir>/geneva-node/``. The facts this rests on (containerd 1.6
quirks, the missing CAP_SYS_RESOURCE, cgroups v1, the network rule) are in
``shared/real-node.md``; the host side (bridge, guards, cleanup) is in ``hostnet.py``.

Pods get addresses on the bridge (198.18.0.0/24) and reach:
* each other and Services (198.19.0.0/16, kube-proxy in iptables mode);
* the API server through the ``kubernetes`` Service (it listens on the bridge's gateway);
* cluster DNS (CoreDNS on the gateway, port 53; the kubelet's clusterDNS);
* servers the tests bind on the gateway address (an S3 endpoint, say) -- nothing else.

Images come from archives imported into containerd (``imagePullPolicy: Never/IfNotPresent``);
there is no registry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from . import hostnet
from .pki import CertSpec

if TYPE_CHECKING:  # pragma: no cover
    from .harness import ControlPlane

NODE_NAME = "geneva-node-0"
CLUSTER_DOMAIN = "cluster.local"
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


class RealNode:
    """The node's processes, spawned through (and stopped with) the control plane."""

    def __init__(self, cp: "ControlPlane", labels: dict[str, str]):
        self.cp = cp
        self.labels = labels
        self.dir = cp.state_dir / hostnet.NODE_DIR
        self.containerd_socket = self.dir / "containerd.sock"

    # ---- host -------------------------------------------------------------
    def prepare_host(self) -> None:
        """Before the API server starts (it listens on the bridge): claim the host, clean it, set it up."""
        owner = hostnet.OWNER_FILE
        if owner.exists():
            other = Path(owner.read_text().strip())
            if other != self.cp.state_dir and node_running(other):
                raise RuntimeError(f"a real node of the control plane in {other} is running on this machine; "
                                   f"stop it first: python -m tests.controlplane down --state-dir {other}")
        done = hostnet.clean_host()
        if done:
            (self.cp.logs / "host-clean.log").write_text("\n".join(done) + "\n")
        before = hostnet.uplink_routes()
        hostnet.set_up()
        owner.write_text(str(self.cp.state_dir))
        after = hostnet.uplink_routes()
        if after != before:  # the network rule: never a new route through the uplink
            raise RuntimeError(f"setting up the bridge changed uplink routes: {before} -> {after}")
        self.dir.mkdir(parents=True, exist_ok=True)

    def issue_certificates(self) -> None:
        pki = self.cp.pki
        pki.issue(CertSpec("kubelet", f"system:node:{NODE_NAME}", ["system:nodes"], client=True))
        pki.issue(CertSpec("kube-proxy", "system:kube-proxy", [], client=True))
        # The API server's identity towards kubelets (logs, exec): allowed everything there.
        pki.issue(CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"], client=True))
        pki.issue(CertSpec("coredns", "coredns", ["system:masters"], client=True))

    # ---- processes ----------------------------------------------------------
    def start(self) -> None:
        self._start_containerd()
        self._import_images()
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns()
        self._wait_ready()

    def _start_containerd(self) -> None:
        d = self.dir
        cni = d / "cni"
        cni.mkdir(exist_ok=True)
        (cni / "10-geneva.conflist").write_text(json.dumps(cni_config(d / "cni-ipam"), indent=2))
        config = d / "containerd.toml"
        config.write_text(containerd_config(d, cni))
        registry_hosts(d)
        self.cp._spawn("containerd", [_which("containerd"), "--config", str(config)])
        self.cp._wait("containerd", "socket", lambda: self.ctr("version").returncode == 0, timeout=60)

    def ctr(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([_which("ctr"), "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True)

    def _import_images(self) -> None:
        """Import whatever image archives are built (at least the pause image is needed by every pod)."""
        from tests.imagebuild import import_all  # the image builder; see `make images`

        import_all(str(self.containerd_socket))
        listed = self.ctr("images", "ls", "-q").stdout.split()
        if SANDBOX_IMAGE not in listed:
            raise RuntimeError(f"{SANDBOX_IMAGE} is not in the node's containerd; run `make images` first")

    def _start_kubelet(self) -> None:
        d, pki = self.dir, self.cp.pki
        kc = self._kubeconfig("kubelet")
        for sub in ("kubelet", "kubelet-pki"):
            (d / sub).mkdir(exist_ok=True)
        (d / "resolv.conf").write_text(f"nameserver {hostnet.GATEWAY}\n")
        self.cp.ports["kubelet_healthz"] = healthz = _free_port()
        config = d / "kubelet.yaml"
        config.write_text(json.dumps(kubelet_config(d, pki.ca_crt, healthz), indent=2))
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        self.cp._spawn("kubelet", [
            str(self.cp.bins.kubelet),
            f"--config={config}", f"--kubeconfig={kc}",
            f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={hostnet.GATEWAY}",
            f"--node-labels={labels}",
            "--v=1",
        ])

    def _start_kube_proxy(self) -> None:
        self.cp.ports["kube_proxy_healthz"] = healthz = _free_port()
        self.cp.ports["kube_proxy_metrics"] = metrics = _free_port()
        config = self.dir / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self._kubeconfig("kube-proxy"))},
            "mode": "iptables",
            "clusterCIDR": hostnet.POD_RANGE,
            "hostnameOverride": NODE_NAME,
            "bindAddress": hostnet.GATEWAY,
            "healthzBindAddress": f"127.0.0.1:{healthz}",
            "metricsBindAddress": f"127.0.0.1:{metrics}",
            "nodePortAddresses": [f"{hostnet.GATEWAY}/32"],
            # 0: leave the host's conntrack sysctls alone (setting them needs privileges we lack).
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            # No NodePorts on 127.0.0.1: that would set route_localnet on the host.
            "iptables": {"localhostNodePorts": False},
        }, indent=2))
        self.cp._spawn("kube-proxy", [str(self.cp.bins.kube_proxy), f"--config={config}", "--v=1"])

    def _start_coredns(self) -> None:
        self.cp.ports["coredns_health"] = health = _free_port()
        self.cp.ports["coredns_ready"] = ready = _free_port()
        corefile = self.dir / "Corefile"
        corefile.write_text(
            f".:53 {{\n"
            f"    bind {hostnet.GATEWAY}\n"
            f"    errors\n"
            f"    health 127.0.0.1:{health}\n"
            f"    ready 127.0.0.1:{ready}\n"
            f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa {{\n"
            f"        kubeconfig {self._kubeconfig('coredns')} geneva-local\n"
            f"        pods insecure\n"
            f"    }}\n"
            # Short: a RayCluster's head Service is created moments before its workers look it up.
            f"    cache 5\n"
            f"}}\n")
        self.cp._spawn("coredns", [str(self.cp.bins.coredns), "-conf", str(corefile)])
        self.cp._wait("coredns", "ready", lambda: self.cp._http_get(f"http://127.0.0.1:{ready}/ready")[0] == 200,
                      timeout=60)

    def _wait_ready(self) -> None:
        def ready() -> bool:
            res = self.cp.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if res.returncode != 0:
                return False
            conds = {c["type"]: c["status"] for c in json.loads(res.stdout)["status"].get("conditions", [])}
            return conds.get("Ready") == "True"

        self.cp._wait("kubelet", f"node {NODE_NAME} Ready", ready)
        self.cp._wait("kube-proxy", "healthz", lambda: self.cp._http_get(
            f"http://127.0.0.1:{self.cp.ports['kube_proxy_healthz']}/healthz")[0] == 200)

    def _kubeconfig(self, user: str) -> Path:
        return self.cp.write_client_kubeconfig(user, self.dir / f"{user}.kubeconfig")

    def stop(self) -> None:
        """After the processes are gone (the control plane stops them): every trace on the host."""
        done = hostnet.clean_host()
        if done and self.cp.logs.is_dir():
            with open(self.cp.logs / "host-clean.log", "a") as f:
                f.write("\n".join(done) + "\n")


# ---------------------------------------------------------------------------- pure builders
def cni_config(ipam_dir: Path) -> dict:
    return {
        "cniVersion": "0.4.0",
        "name": "geneva",
        "plugins": [{
            "type": "bridge",
            "bridge": hostnet.BRIDGE,
            "isGateway": True,
            "ipMasq": False,  # nothing is ever masqueraded towards the uplink
            "hairpinMode": True,  # a pod reaching itself through its Service
            "ipam": {
                "type": "host-local",
                "dataDir": str(ipam_dir),
                "ranges": [[{"subnet": hostnet.NODE_SUBNET, "rangeStart": "198.18.0.16",
                             "rangeEnd": "198.18.0.250", "gateway": hostnet.GATEWAY}]],
                # These two and the bridge's own subnet only: no default route in a pod.
                "routes": [{"dst": hostnet.POD_RANGE}, {"dst": hostnet.SERVICE_CIDR}],
            },
        }],
    }


def containerd_config(d: Path, cni_dir: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / 'containerd-root'}"
state = "{d / 'containerd-state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{d / 'containerd.sock'}"
[ttrpc]
  address = "{d / 'containerd.sock'}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'containerd-opt'}"
[{cri}]
  sandbox_image = "{SANDBOX_IMAGE}"
  # Without it runc cannot write oom_score_adj (no CAP_SYS_RESOURCE here) and every start
  # fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d / 'runc'}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_dir}"
    max_conf_num = 1
  # Every registry resolves to a closed loopback port: an image that is not imported fails to
  # pull (ErrImagePull) without a DNS query or a connection ever leaving the machine.
  [{cri}.registry]
    config_path = "{d / 'registry-hosts'}"
"""


def registry_hosts(d: Path) -> Path:
    """containerd's hosts.toml for all registries (`_default`): nowhere but 127.0.0.1:9 (discard)."""
    hosts = d / "registry-hosts" / "_default"
    hosts.mkdir(parents=True, exist_ok=True)
    (hosts / "hosts.toml").write_text('server = "http://127.0.0.1:9"\n\n[host."http://127.0.0.1:9"]\n'
                                      '  capabilities = ["pull", "resolve"]\n')
    return hosts


def kubelet_config(d: Path, client_ca: Path, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": hostnet.GATEWAY,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{d / 'containerd.sock'}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{hostnet.CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "oomScoreAdj": 0,  # the kubelet may not lower its own score here either
        "clusterDNS": [hostnet.GATEWAY],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(d / "resolv.conf"),
        "staticPodPath": "",
        "serializeImagePulls": False,
        # Imported images have no registry to come back from: never collect them, never evict
        # pods for a full-ish disk of a development machine.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "registerNode": True,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "shutdownGracePeriod": "0s",
    }


def node_running(state_dir: Path) -> bool:
    """Whether the node recorded in another state dir still has a live kubelet or containerd."""
    from .harness import ControlPlane  # harness imports this module

    try:
        other = ControlPlane.attach(state_dir)
    except (OSError, ValueError, KeyError):
        return False
    return any(p.alive() for name, p in other.procs.items() if name in ("kubelet", "containerd"))


def _which(name: str) -> str:
    found = shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if found is None:
        raise RuntimeError(f"{name} not found: install the Debian packages of .ci/install-system.sh")
    return found


def _free_port() -> int:
    from .harness import free_port

    return free_port()
