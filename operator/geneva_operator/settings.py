"""Operator settings, from GENEVA_* environment variables (the chart sets them).

`ClusterSettings` holds what shapes the RayClusters the operator builds and is all the
pure builders in `geneva_operator.cluster` take; `OperatorSettings` adds how the operator
itself runs. Lists (`namespaces`) are JSON or comma-separated: GENEVA_NAMESPACES=a,b.
"""
from __future__ import annotations

import json
from typing import Annotated, Optional

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import __version__

# KubeRay names the head Service `<raycluster>-head-svc`; 8265 is the dashboard and job API.
DEFAULT_DASHBOARD_URL_TEMPLATE = "http://{cluster}-head-svc.{namespace}.svc:8265"
DASHBOARD_URL_PLACEHOLDERS = ("cluster", "namespace")
# The Dockerfile's ray-worker target at the operator's own version (the chart's appVersion):
# Ray plus the engine that speaks this operator's job contract (api/job_contract.py).
DEFAULT_RAY_IMAGE = f"ghcr.io/lancedb/geneva-ray-worker:{__version__}"


def check_dashboard_url_template(template: str) -> str:
    """The template with only {cluster} and {namespace} placeholders; ValueError naming any other."""
    try:
        template.format(**{k: k for k in DASHBOARD_URL_PLACEHOLDERS})
    except KeyError as e:
        raise ValueError(
            f"unknown placeholder {{{e.args[0]}}} in dashboard URL template {template!r}; "
            f"use {', '.join('{' + k + '}' for k in DASHBOARD_URL_PLACEHOLDERS)}"
        ) from None
    except (IndexError, ValueError) as e:
        raise ValueError(f"bad dashboard URL template {template!r}: {e}") from None
    return template


class ClusterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENEVA_", extra="ignore")

    default_ray_image: str = Field(
        default=DEFAULT_RAY_IMAGE,
        min_length=1,
        description="Image of the Ray pods of backfills whose spec.cluster.image is unset; it must hold the "
        "engine (geneva-operator[engine]). The chart sets it from rayImage.",
    )
    ray_token_secret: Optional[str] = Field(
        default=None,
        description="Secret (in the backfill's namespace) holding the Ray auth token for backfills whose spec names "
        "none; unset: such clusters run without Ray token auth.",
    )
    ray_token_secret_key: str = Field(default="token", description="Key of the token inside ray_token_secret.")
    gpu_toleration: bool = Field(
        default=True,
        description="GPU worker groups tolerate the nvidia.com/gpu:NoSchedule taint most GPU node pools carry.",
    )


class OperatorSettings(ClusterSettings):
    dashboard_url_template: str = Field(
        default=DEFAULT_DASHBOARD_URL_TEMPLATE,
        description="Where the operator reaches a cluster's Ray dashboard; {cluster} and {namespace} are filled in. "
        "Tests point it at a local Ray.",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Namespaces to watch; empty: the whole cluster."
    )
    poll_interval_seconds: float = Field(default=10.0, gt=0, description="How often a running job's status and progress are polled.")
    provisioning_poll_seconds: float = Field(default=5.0, gt=0, description="How often a starting cluster is checked.")
    progress_interval_seconds: float = Field(
        default=2.0, ge=0,
        description="How soon a progress line of the job's log reaches the status (several lines make one status "
        "write). The result line and the end of the log are written at once.",
    )
    progress_writes_per_second: float = Field(
        default=50.0, gt=0,
        description="The budget of progress status writes per second, shared by every backfill whose log is "
        "followed: with more of them than progress_interval_seconds x this, each one's progress is written "
        "less often (the API server's load stays flat; the end of a run is never held back).",
    )
    token_cache_seconds: float = Field(
        default=300.0, ge=0,
        description="How long a Ray token read from its Secret is reused (0: read it at every reconcile). "
        "A token Ray refuses is re-read at once, whatever this says.",
    )
    kuberay_features_seconds: float = Field(
        default=60.0, ge=0,
        description="How long what the installed KubeRay supports, read from its RayCluster CRD, is reused "
        "(a KubeRay upgrade is seen within this time).",
    )
    http_timeout_seconds: float = Field(default=10.0, gt=0, description="Timeout of one request to the Ray dashboard.")
    api_threads: int = Field(default=32, ge=1, le=256, description="Threads for Kubernetes API calls (the client is synchronous).")

    @field_validator("dashboard_url_template")
    @classmethod
    def _template_placeholders(cls, v: str) -> str:
        return check_dashboard_url_template(v)

    @field_validator("namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, v: object) -> object:
        if isinstance(v, str):
            v = v.strip()
            if v.startswith("["):
                return json.loads(v)
            return [n.strip() for n in v.split(",") if n.strip()]
        return v
