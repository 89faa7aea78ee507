"""A real local Ray 2.60 head with its dashboard on 127.0.0.1 and token authentication on,
shared by the tests that need one (tests/operator: the Job API client; tests/cluster: the
head standing in for a RayCluster's head in the end-to-end tests).

`ray start --head --block` runs in its own session (process group) so teardown can stop
exactly the processes it started (never `ray stop`, which would stop other people's Ray).
Token auth the way a KubeRay head gets it: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN in the
environment of `ray start`. Jobs run `python` of this venv (its bin dir leads PATH).

One head per pytest process: every `local_ray` fixture (each conftest that imports it gets
its own session-scoped definition) shares it; the last one torn down stops it.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import pytest

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 180  # seconds; `ray start` takes ~40 s on the 2-core test machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class LocalRay:
    address: str  # dashboard / Job API base URL
    token: str
    temp_dir: Path


def _dashboard_up(url: str, token: str) -> bool:
    request = urllib.request.Request(url + "/api/version", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _accepts_jobs(url: str, token: str) -> bool:
    body = json.dumps({"entrypoint": "true", "submission_id": f"readiness-probe-{secrets.token_hex(4)}"}).encode()
    request = urllib.request.Request(
        url + "/api/jobs/", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start() -> tuple[LocalRay, subprocess.Popen, object]:
    token = secrets.token_hex(16)
    # Ray's unix socket paths must stay short: a short private dir under /tmp.
    temp_dir = Path(tempfile.mkdtemp(prefix="gray-", dir="/tmp"))
    dashboard_port = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # jobs run `python` of this venv
        "RAY_USAGE_STATS_ENABLED": "0",
        # A loaded 2-core machine starts the dashboard agent slowly; Ray's default waits are
        # tuned for idle machines.
        "RAY_agent_register_timeout_ms": "300000",
    }
    cmd = [
        str(VENV_BIN / "ray"), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1", f"--port={free_port()}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        "--num-cpus=1", f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]
    log = open(temp_dir / "ray-start.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard_port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _dashboard_up(address, token):
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}; see {temp_dir / 'ray-start.log'}")
            if time.monotonic() > deadline:
                pytest.fail(f"Ray dashboard not up after {START_TIMEOUT}s; see {temp_dir / 'ray-start.log'}")
            time.sleep(1)
        # The dashboard answers before the head's job agent registers ("No available agent
        # to submit job", HTTP 500): the head is ready when it accepts a job.
        while not _accepts_jobs(address, token):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Ray head never accepted a job; see {temp_dir}")
            time.sleep(2)
    except BaseException:
        _stop(proc, log, temp_dir)
        raise
    return LocalRay(address=address, token=token, temp_dir=temp_dir), proc, log


def _stop(proc: subprocess.Popen, log, temp_dir: Path) -> None:
    _stop_group(proc)
    log.close()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group we started, SIGKILL what is left after a grace period."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # gcs_server / raylet ignore SIGTERM at times
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


_shared: Optional[tuple[LocalRay, subprocess.Popen, object]] = None
_users = 0


@pytest.fixture(scope="session")
def local_ray() -> Iterator[LocalRay]:
    global _shared, _users
    if _shared is None:
        _shared = _start()
    _users += 1
    try:
        yield _shared[0]
    finally:
        _users -= 1
        if _users == 0:
            ray, proc, log = _shared
            _shared = None
            _stop(proc, log, ray.temp_dir)
