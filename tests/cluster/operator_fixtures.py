"""Pieces of the end-to-end tests (test_operator_e2e.py): the real operator as a process, the
CRD installed with kubectl, a real local LanceDB table, the example manifest, and waits that
watch the API server (or poll the Ray Job API) with deadlines.

The operator runs exactly as documented, `kopf run -m geneva_operator.handlers --standalone
--namespace <pattern>`, configured through GENEVA_* variables only; its dashboard URL template
points at the local Ray head (tests/localray.py) standing in for every RayCluster's head, and
it watches the namespaces of its test module (a glob), so one operator serves a module.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.controlplane.harness import Cluster, free_port, wait_for_liveness  # noqa: E402
from tests.localray import LocalRay, local_ray  # noqa: E402,F401  (fixture, re-exported)

VENV_BIN = Path(sys.executable).parent
CRD_DIR = REPO / "crds"
CRD_NAME = "genevabackfills.geneva.lancedb.com"
EXAMPLE = REPO / "examples" / "backfill.yaml"
GROUP, VERSION, PLURAL = "geneva.lancedb.com", "v1alpha1", "genevabackfills"
RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"
FINALIZER = "geneva.lancedb.com/finalizer"
TOKEN_SECRET = "ray-token"
RAY_SERVICE_ACCOUNT = "geneva-ray-runner"

# The test table: ROWS rows in FRAGMENTS fragments (one lancedb add() per fragment).
ROWS, FRAGMENTS = 20_000, 4
WORDS = "lance ray arrow column fragment backfill vector embed caption model table query".split()


# ---------------------------------------------------------------- the operator process


class OperatorProcess:
    """`kopf run` of geneva_operator.handlers in its own process group; start/kill/restart."""

    def __init__(self, kubeconfig: Path, ray: LocalRay, namespace_pattern: str, log_dir: Path,
                 extra_env: Optional[dict[str, str]] = None):
        self.kubeconfig, self.ray, self.pattern = Path(kubeconfig), ray, namespace_pattern
        self.log_dir = log_dir
        self.extra_env = dict(extra_env or {})
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self.log_path: Optional[Path] = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GENEVA_") and k != "KUBECONFIG"}
        env.update({
            "KUBECONFIG": str(self.kubeconfig),
            # Every RayCluster's "head" is the local Ray (there is no pod network here).
            "GENEVA_DASHBOARD_URL_TEMPLATE": self.ray.address,
            "GENEVA_POLL_INTERVAL_SECONDS": "1",
            "GENEVA_PROVISIONING_POLL_SECONDS": "1",
            "GENEVA_HTTP_TIMEOUT_SECONDS": "20",
            "GENEVA_METRICS_PORT": str(free_port()),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        })
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 90) -> "OperatorProcess":
        assert self.proc is None or self.proc.poll() is not None, "operator already running"
        self.starts += 1
        self.liveness_port = free_port()
        self.log_path = self.log_dir / f"operator-{self.starts}.log"
        cmd = [str(VENV_BIN / "kopf"), "run", "-m", "geneva_operator.handlers", "--standalone",
               "--namespace", self.pattern, "--verbose", "--log-format=full",
               f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz"]
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.log_dir, start_new_session=True)
        log.close()
        # kopf serves /healthz once its startup handlers (our runtime, /metrics) are done.
        wait_for_liveness(self.proc, f"http://127.0.0.1:{self.liveness_port}/healthz", timeout,
                          interval=0.5, log_tail=self.log_tail)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        """SIGTERM: kopf's graceful stop; SIGKILL: a crash (nothing runs after it)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.kill()
        self.start()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no operator log)"
        text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.log_path} (last {len(text)} lines)\n" + "\n".join(text)


# ---------------------------------------------------------------- API access


class Api:
    """The kubernetes Python client against the test cluster: reads and watches (what the tests
    *do* goes through kubectl, as a user's would)."""

    def __init__(self, kubeconfig: Path):
        from kubernetes import client, config

        self.client = config.new_client_from_config(config_file=str(kubeconfig))
        self.custom = client.CustomObjectsApi(self.client)
        self.core = client.CoreV1Api(self.client)

    def get(self, kind: str, namespace: str, name: str) -> Optional[dict]:
        from kubernetes.client.exceptions import ApiException

        try:
            if kind == "backfill":
                return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            if kind == "raycluster":
                return self.custom.get_namespaced_custom_object(RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        raise ValueError(kind)

    def _lister(self, kind: str, namespace: str) -> tuple[Callable, tuple]:
        if kind == "backfill":
            return self.custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURAL)
        if kind == "raycluster":
            return self.custom.list_namespaced_custom_object, (RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL)
        raise ValueError(kind)

    def wait(self, kind: str, namespace: str, name: str, predicate: Callable[[Optional[dict]], Any],
             what: str, timeout: float, on_timeout: Optional[Callable[[], str]] = None) -> Optional[dict]:
        """Watch one object until predicate(object or None when absent) holds; returns the object.
        A watch with a deadline: every change is seen as it happens, no polling interval."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        obj = self.get(kind, namespace, name)
        while True:
            if predicate(obj):
                return obj
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                extra = on_timeout() if on_timeout else ""
                state = json.dumps((obj or {}).get("status"), indent=1)[:3000] if obj else "absent"
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last {kind} status: {state}{extra}")
            rv = (obj or {}).get("metadata", {}).get("resourceVersion")
            if obj is None:  # resume from the list's version so a creation in between is not missed
                fn, args = self._lister(kind, namespace)
                rv = fn(*args, field_selector=f"metadata.name={name}")["metadata"]["resourceVersion"]
                obj = self.get(kind, namespace, name)
                if obj is not None:
                    continue
            fn, args = self._lister(kind, namespace)
            w = watch.Watch()
            try:
                for ev in w.stream(fn, *args, field_selector=f"metadata.name={name}", resource_version=rv,
                                   timeout_seconds=max(1, int(remaining) + 1), _request_timeout=remaining + 5):
                    if ev["type"] == "ERROR":
                        break  # e.g. 410 Gone: read afresh
                    obj = None if ev["type"] == "DELETED" else ev["object"]
                    if predicate(obj):
                        return obj
                    if time.monotonic() >= deadline:
                        break
            except (ApiException, OSError, ValueError):
                pass  # a broken watch: read afresh and watch again
            finally:
                w.stop()
            obj = self.get(kind, namespace, name)

    def events(self, namespace: str, name: str) -> list[dict]:
        evs = self.core.list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=GenevaBackfill,involvedObject.name={name}")
        return [{"type": e.type, "reason": e.reason, "message": e.message, "count": e.count} for e in evs.items]

    def pods(self, namespace: str, cluster: str) -> list:
        return self.core.list_namespaced_pod(namespace, label_selector=f"ray.io/cluster={cluster}").items


# ---------------------------------------------------------------- the local Ray's Job API


class RayJobs:
    def __init__(self, ray: LocalRay):
        self.ray = ray

    def _get(self, path: str) -> Any:
        req = urllib.request.Request(self.ray.address + path, headers={"Authorization": f"Bearer {self.ray.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())

    def jobs_of(self, uid: str) -> list[dict]:
        """Every job the operator submitted for the backfill with this uid (its metadata)."""
        return [j for j in self._get("/api/jobs/") if (j.get("metadata") or {}).get("geneva.lancedb.com/uid") == uid]

    def job(self, submission_id: str) -> dict:
        return self._get(f"/api/jobs/{submission_id}")

    def logs(self, submission_id: str) -> str:
        return self._get(f"/api/jobs/{submission_id}/logs").get("logs", "")


# ---------------------------------------------------------------- table and manifests


def make_table(db: Path | str, name: str = "captions", rows: int = ROWS, fragments: int = FRAGMENTS,
               storage_options: Optional[dict[str, str]] = None) -> list[str]:
    """A LanceDB table of `rows` rows in `fragments` fragments: id, caption. Returns the captions
    in id order (one in 50 is null: nulls must stay null)."""
    import lancedb
    import pyarrow as pa

    conn = lancedb.connect(str(db), storage_options=storage_options)
    captions: list[Optional[str]] = []
    per = -(-rows // fragments)
    table = None
    for start in range(0, rows, per):
        n = min(per, rows - start)
        part_caps = [None if i % 50 == 7 else " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + i % 9))
                     for i in range(start, start + n)]
        captions += part_caps
        part = pa.table({"id": pa.array(range(start, start + n), pa.int64()), "caption": pa.array(part_caps, pa.string())})
        if table is None:
            table = conn.create_table(name, part)
        else:
            table.add(part)
    assert len(table.to_lance().get_fragments()) == fragments
    return captions


def read_column(db: Path, column: str, name: str = "captions") -> list[Optional[int]]:
    import lance

    t = lance.dataset(str(db / f"{name}.lance")).to_table(columns=["id", column]).sort_by("id")
    return t.column(column).to_pylist()


def expected_lengths(captions: list[Optional[str]]) -> list[Optional[int]]:
    return [None if c is None else len(c) for c in captions]


def example_manifest() -> dict:
    docs = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    (backfill,) = [d for d in docs if d.get("kind") == "GenevaBackfill"]
    return backfill


def backfill_manifest(namespace: str, db: Path, name: Optional[str] = None, **spec_overrides: Any) -> dict:
    """examples/backfill.yaml made local: its namespace, the local table, the UDF module importable
    by the local Ray's job (PYTHONPATH = this checkout) and spec overrides (deep-merged; None
    removes a key)."""
    m = copy.deepcopy(example_manifest())
    m["metadata"]["namespace"] = namespace
    if name:
        m["metadata"]["name"] = name
    spec = m["spec"]
    spec["table"]["uri"] = str(db)
    spec["table"].pop("storageOptions", None)  # an S3 region means nothing to a local path
    spec["runtimeEnv"]["envVars"]["PYTHONPATH"] = str(REPO)
    _merge(spec, spec_overrides)
    return m


def _merge(into: dict, overrides: dict) -> None:
    for k, v in overrides.items():
        if v is None:
            into.pop(k, None)
        elif isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


# A UDF given inline (udf.source): length, with a sleep per batch so that "mid-run" is a
# window of known size, or failing on purpose.
SLOW_LENGTH_SOURCE = '''
import time

import pyarrow as pa
import pyarrow.compute as pc


class SlowLength:
    def __init__(self, sleep_per_batch: float = 0.0):
        self.sleep_per_batch = sleep_per_batch

    def __call__(self, text):
        time.sleep(self.sleep_per_batch)
        return pc.utf8_length(text).cast(pa.int32())
'''

FAILING_SOURCE = '''
def explode(text):
    raise ValueError("e2e: this udf fails on purpose")
'''


def slow_udf(sleep_per_batch: float, batch_size: int = 500) -> dict:
    return {"function": "e2e_slow:SlowLength", "source": SLOW_LENGTH_SOURCE, "kind": "Batch",
            "inputColumns": ["caption"], "outputType": "int32", "batchSize": batch_size,
            "initArgs": {"sleep_per_batch": sleep_per_batch}}


# ---------------------------------------------------------------- status predicates


def phase(obj: Optional[dict]) -> Optional[str]:
    return ((obj or {}).get("status") or {}).get("phase")


def conditions(obj: Optional[dict]) -> dict[str, dict]:
    return {c["type"]: c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def rows_done(obj: Optional[dict]) -> int:
    return (((obj or {}).get("status") or {}).get("progress") or {}).get("rowsDone", 0)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def api(control_plane) -> Api:
    return Api(control_plane.kubeconfig)


@pytest.fixture(scope="module")
def crd(control_plane) -> str:
    """`kubectl apply -f crds/`, as the README says; established before any use."""
    control_plane.kubectl("apply", "-f", str(CRD_DIR))
    control_plane.wait_established(CRD_NAME)
    return CRD_NAME


@pytest.fixture(scope="module")
def ns_prefix() -> str:
    return f"e2e-{uuid.uuid4().hex[:6]}-"


@pytest.fixture(scope="module")
def operator(control_plane, crd, local_ray, ns_prefix, tmp_path_factory) -> Iterator[OperatorProcess]:
    """One operator process per test module, watching the module's namespaces (a glob)."""
    log_dir = tmp_path_factory.mktemp("operator")
    op = OperatorProcess(control_plane.kubeconfig, local_ray, f"{ns_prefix}*", log_dir)
    op.start()
    yield op
    op.stop()


@pytest.fixture
def e2e_namespace(control_plane, ns_prefix, local_ray, request) -> Iterator[str]:
    """A namespace the operator watches, holding what a user prepares before applying a backfill:
    the Ray token Secret and the Ray pods' service account."""
    name = f"{ns_prefix}{request.node.name[5:25].lower().replace('_', '-').strip('-')}-{uuid.uuid4().hex[:4]}"
    name = "".join(c for c in name if c.isalnum() or c == "-")
    k = control_plane.kubectl
    k("create", "namespace", name)
    k("wait", "--for=create", "--timeout=60s", "serviceaccount/default", "-n", name)
    k("create", "secret", "generic", TOKEN_SECRET, f"--from-literal=token={local_ray.token}", "-n", name)
    k("create", "serviceaccount", RAY_SERVICE_ACCOUNT, "-n", name)
    yield name
    # Backfills first, while the operator runs (their finalizer needs it), then the namespace.
    k("delete", "genevabackfills", "--all", "-n", name, "--timeout=90s", check=False)
    k("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


@pytest.fixture
def table(tmp_path) -> tuple[Path, list[Optional[str]]]:
    db = tmp_path / "db"
    return db, make_table(db)


@pytest.fixture(scope="module")
def ray_jobs(local_ray) -> RayJobs:
    return RayJobs(local_ray)


def apply(cluster: Cluster, manifest: dict | str, check: bool = True):
    text = manifest if isinstance(manifest, str) else yaml.safe_dump(manifest, sort_keys=False)
    return cluster.kubectl("apply", "-f", "-", input=text, check=check)
