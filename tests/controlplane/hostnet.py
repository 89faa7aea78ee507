"""The host side of the real test node: its bridge, its guards, and the removal of every trace.

The workplace rule comes first: test traffic may only reach loopback or addresses this machine
creates. So pods live on a bridge of their own (198.18.0.0/24 of the 198.18.0.0/16 benchmarking
range), Services in 198.19.0.0/16, and three guards keep anything from leaving:

* pods get routes for 198.18/16 and 198.19/16 only (no default route: the CNI config);
* the FORWARD chain drops whatever would cross between the bridge and any other interface;
* the rest of 198.18/16 is a blackhole, so a mistaken pod address never reaches the uplink.

Everything the node leaves behind (processes in its cgroups, containerd shims, mounts, network
namespaces, KUBE-* iptables chains, routes, the bridge, cgroups, ip_forward) is removed by
`clean_host()`, which `RealNode.start` also runs first: processes are killed before CI runs, so
an earlier teardown may never have happened. Only one real node per machine at a time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

BRIDGE = "geneva0"
GATEWAY = "198.18.0.1"  # the bridge's address: node IP, DNS, S3 for pods, API server
NODE_SUBNET = "198.18.0.0/24"
POD_RANGE = "198.18.0.0/16"
SERVICE_CIDR = "198.19.0.0/16"
KUBERNETES_SERVICE_IP = "198.19.0.1"  # the range's first address: the API server's own Service
GUARD_CHAIN = "GENEVA-GUARD"
CGROUP_ROOT = "geneva"  # the kubelet's cgroupRoot, under every v1 hierarchy
NODE_DIR = "geneva-node"  # the node's directory inside a state dir: the marker of our mounts
CGROUPS = Path("/sys/fs/cgroup")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
OWNER_FILE = Path("/run/geneva-node.owner")  # which state dir's node owns the host


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {res.returncode}: {res.stderr.strip()}")
    return res


def uplink_routes() -> list[str]:
    """Routes through any interface but ours and loopback: what the node must never add to."""
    out = _run("ip", "-4", "route", "show", "table", "all").stdout.splitlines()
    return sorted(r for r in out if f"dev {BRIDGE}" not in r and not r.startswith(("blackhole", "local ", "broadcast "))
                  and "dev lo" not in r)


# ---------------------------------------------------------------------------- set up
def set_up() -> None:
    """Create the bridge and the guards. Idempotent only after clean_host()."""
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    _run("ip", "route", "add", "blackhole", POD_RANGE)
    # Not a blackhole: host-to-ClusterIP traffic leaves by this route (kube-proxy DNATs it in
    # OUTPUT), and a blackhole would drop it before NAT.
    _run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", GATEWAY)
    _run("iptables", "-N", GUARD_CHAIN)
    _run("iptables", "-A", GUARD_CHAIN, "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
    _run("iptables", "-A", GUARD_CHAIN, "-o", BRIDGE, "!", "-i", BRIDGE, "-j", "DROP")
    _run("iptables", "-I", "FORWARD", "1", "-j", GUARD_CHAIN)
    # Pod -> ClusterIP -> pod on the same bridge is routed by the host (after DNAT); the guard
    # above keeps forwarding inside the bridge. Bridged frames must pass iptables so that
    # conntrack undoes the DNAT on the replies.
    IP_FORWARD.write_text("1\n")
    Path("/proc/sys/net/bridge/bridge-nf-call-iptables").write_text("1\n")
    for hierarchy in _hierarchies():
        d = hierarchy / CGROUP_ROOT
        d.mkdir(exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):  # an empty cpuset admits no task
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((hierarchy / f).read_text())


def _hierarchies() -> list[Path]:
    return sorted(p for p in CGROUPS.iterdir() if p.is_dir() and not p.is_symlink())


# ---------------------------------------------------------------------------- clean up
def clean_host() -> list[str]:
    """Remove every trace a real node (this run's or an earlier, killed one) left. Returns what it did."""
    done: list[str] = []
    done += _kill_node_processes()
    done += _unmount_node_mounts()
    done += _delete_netns()
    done += _drop_iptables_chains()
    for route in (["blackhole", POD_RANGE], [SERVICE_CIDR]):
        if _run("ip", "route", "del", *route, check=False).returncode == 0:
            done.append(f"route {' '.join(route)}")
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        _run("ip", "link", "del", BRIDGE)
        done.append(f"bridge {BRIDGE}")
    done += _remove_cgroups()
    if IP_FORWARD.read_text().strip() != "0":
        IP_FORWARD.write_text("0\n")  # the machine's own setting
        done.append("ip_forward=0")
    for stale in (Path("/run/containerd/s"), Path("/run/containerd/runc")):
        if stale.exists():
            subprocess.run(["rm", "-rf", str(stale)])
            done.append(str(stale))
    OWNER_FILE.unlink(missing_ok=True)
    return done


def traces() -> list[str]:
    """What of a node is still on the host (empty after clean_host): for tests and `status`."""
    found = []
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        found.append(f"bridge {BRIDGE}")
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout
    found += [f"route {r}" for r in routes.splitlines() if "198.18." in r or "198.19." in r]
    for tool in ("iptables", "ip6tables"):
        found += [f"{tool}: {ln}" for ln in _run(f"{tool}-save", check=False).stdout.splitlines() if _ours(ln)]
    found += [f"process {p}" for p in sorted(_pids_in_cgroups() | _shim_pids())]
    found += [f"cgroup {h / CGROUP_ROOT}" for h in _hierarchies() if (h / CGROUP_ROOT).exists()]
    found += [f"mount {m}" for m in _node_mounts()]
    if IP_FORWARD.read_text().strip() != "0":
        found.append("ip_forward=1")
    return found


def _pids_in_cgroups() -> set[int]:
    pids: set[int] = set()
    for hierarchy in _hierarchies():
        root = hierarchy / CGROUP_ROOT
        if root.is_dir():
            for procs in root.rglob("cgroup.procs"):
                try:
                    pids.update(int(p) for p in procs.read_text().split())
                except OSError:
                    pass
    return pids


def _shim_pids() -> set[int]:
    """containerd shims serving a node's containerd (their -address names our node dir)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and any(f"/{NODE_DIR}/".encode() in a for a in argv):
            pids.add(int(proc.name))
    return pids


def _kill_node_processes() -> list[str]:
    killed: set[int] = set()
    for _ in range(20):  # a shim may start a process while we kill: repeat until none
        pids = (_pids_in_cgroups() | _shim_pids()) - {os.getpid()}
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return [f"killed {len(killed)} node processes"] if killed else []


def _node_mounts() -> set[str]:
    """Mount points under a node's directory (pod volumes, rootfs, shm) and CNI's network namespaces."""
    points = (line.split()[4].replace("\\040", " ") for line in Path("/proc/self/mountinfo").read_text().splitlines())
    return {m for m in points if f"/{NODE_DIR}/" in m or m.startswith("/run/netns/cni-")}


def _unmount_node_mounts() -> list[str]:
    targets = _node_mounts()
    for m in sorted(targets, key=lambda m: m.count("/"), reverse=True):
        _run("umount", "-l", m, check=False)
    return [f"unmounted {len(targets)} mounts"] if targets else []


def _delete_netns() -> list[str]:
    netns = Path("/run/netns")
    names = [p.name for p in netns.glob("cni-*")] if netns.is_dir() else []
    for n in names:
        _run("ip", "netns", "delete", n, check=False)
        (netns / n).unlink(missing_ok=True)
    return [f"deleted {len(names)} network namespaces"] if names else []


def _drop_iptables_chains() -> list[str]:
    """Drop the chains kubelet and kube-proxy made (KUBE-*) and our guard, keeping all else."""
    done = []
    for tool in ("iptables", "ip6tables"):
        saved = _run(f"{tool}-save", check=False).stdout.splitlines()
        ours = sum(1 for ln in saved if _ours(ln))
        if ours:
            kept = "\n".join(ln for ln in saved if not _ours(ln)) + "\n"
            subprocess.run([f"{tool}-restore"], input=kept, text=True, check=True)
            done.append(f"{tool}: {ours} rules/chains")
    return done


def _ours(iptables_line: str) -> bool:
    """A chain or rule of the kubelet's or kube-proxy's (KUBE-*), or our guard."""
    return "KUBE-" in iptables_line or GUARD_CHAIN in iptables_line


def _remove_cgroups() -> list[str]:
    removed = 0
    for hierarchy in _hierarchies():
        root = hierarchy / CGROUP_ROOT
        if not root.is_dir():
            continue
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + [root]:
            for _ in range(50):  # a killed task leaves its cgroup a moment later
                try:
                    d.rmdir()
                    removed += 1
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
    return [f"removed {removed} cgroups"] if removed else []
