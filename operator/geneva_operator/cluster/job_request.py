"""The Ray job request of one attempt: spec and identity in, the Job API's submission body out.
Pure, beside the RayCluster builder; rayjobs.py sends it."""
from __future__ import annotations

from typing import Any, Optional

from ..api.job_contract import entrypoint, work_from_spec
from ..api.models import BackfillSpec


def job_request(namespace: str, name: str, uid: str, spec: BackfillSpec, submission_id: str, attempt: int) -> dict[str, Any]:
    """Keyword arguments of RayJobClient.ensure_job. The metadata names the backfill, run and
    attempt, for whoever reads the job in Ray's dashboard."""
    return {
        "submission_id": submission_id,
        "entrypoint": entrypoint(work_from_spec(spec)),
        "runtime_env": runtime_env(spec),
        "metadata": {
            "geneva.lancedb.com/backfill": f"{namespace}/{name}",
            "geneva.lancedb.com/uid": uid,
            "geneva.lancedb.com/attempt": str(attempt),
            "geneva.lancedb.com/udf-version": spec.udf.version,
        },
    }


def runtime_env(spec: BackfillSpec) -> Optional[dict[str, Any]]:
    """Ray's runtime_env from spec.runtimeEnv (only the keys that are set)."""
    env = spec.runtime_env
    if env is None:
        return None
    out: dict[str, Any] = {}
    if env.pip:
        out["pip"] = list(env.pip)
    if env.env_vars:
        out["env_vars"] = dict(env.env_vars)
    if env.working_dir:
        out["working_dir"] = env.working_dir
    if env.py_modules:
        out["py_modules"] = list(env.py_modules)
    return out or None
