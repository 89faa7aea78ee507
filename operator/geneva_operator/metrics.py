"""Prometheus metrics of the operator, served on GENEVA_METRICS_PORT (default 8080) at /metrics.

geneva_backfills{phase}                 gauge      backfills this operator sees, by phase
geneva_rows_committed_total              counter    rows the jobs reported committed (all backfills)
geneva_reconcile_errors_total{handler}   counter    reconciles that raised (retried later)
geneva_job_submission_seconds            histogram  time of one idempotent submission (GET, POST, GET)
"""
from __future__ import annotations

import threading
from typing import Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .api.models import Phase

REGISTRY = CollectorRegistry(auto_describe=True)

BACKFILLS = Gauge("geneva_backfills", "GenevaBackfills by phase.", ["phase"], registry=REGISTRY)
ROWS_COMMITTED = Counter("geneva_rows_committed", "Rows committed by backfill jobs.", registry=REGISTRY)
RECONCILE_ERRORS = Counter("geneva_reconcile_errors", "Reconciles that failed and will be retried.", ["handler"], registry=REGISTRY)
SUBMISSION_SECONDS = Histogram(
    "geneva_job_submission_seconds",
    "Latency of submitting a Ray job (lookup, submission, read-back).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

_phases: dict[str, str] = {}  # resource uid -> phase; the gauge is recomputed from it
_lock = threading.Lock()  # the HTTP server thread reads while handlers write


def observe_phase(uid: str, phase: Optional[str]) -> None:
    """Record a backfill's phase (None: it is gone)."""
    with _lock:
        if phase is None:
            _phases.pop(uid, None)
        else:
            _phases[uid] = phase
        counts = {p.value: 0 for p in Phase}
        for p in _phases.values():
            counts[p] = counts.get(p, 0) + 1
        for p, n in counts.items():
            BACKFILLS.labels(phase=p).set(n)


def rows_committed(before: int, after: int) -> None:
    """Count rows newly reported committed within one run (a new run starts from 0)."""
    if after > before:
        ROWS_COMMITTED.inc(after - before)


class MetricsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENEVA_", extra="ignore")

    metrics_port: int = Field(default=8080, ge=0, le=65535, description="Port of /metrics; 0 turns the endpoint off.")
    metrics_address: str = Field(default="0.0.0.0", description="Address /metrics listens on.")


def serve(settings: Optional[MetricsSettings] = None) -> Optional[int]:
    """Start the /metrics endpoint in a background thread; returns its port (None if off)."""
    settings = settings or MetricsSettings()
    if not settings.metrics_port:
        return None
    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_address, registry=REGISTRY)
    return server.server_port
