"""Operator-wide setup: kopf settings, the shared runtime (API clients), /metrics."""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any

import kopf

from .. import metrics
from ..rayjobs import new_session
from ..api.models import GROUP
from ..kube import Kube, load_config
from ..settings import OperatorSettings
from .caches import RAY_POD_LABELS
from .runtime import Runtime

FINALIZER = "geneva.lancedb.com/finalizer"


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = FINALIZER
    # kopf's bookkeeping goes to annotations under our group, never into our status
    # (the CRD's status schema would prune it anyway).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Only explicit kopf.event() calls become Events (handler log lines do not).
    settings.posting.loggers = False
    # Only Ray pods (caches.ray_pods), filtered by the API server: never a watch of every pod.
    # (kopf < 1.45 lacks server-side selectors; the index's own label filter still applies.)
    selectors = getattr(settings.watching, "label_selectors", None)
    if selectors is not None:
        selectors["v1", "pods"] = ",".join(RAY_POD_LABELS)
    # Watches reconnect periodically so a silently dropped connection cannot stall us.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330


async def namespaced_only(kube: Kube, namespaces: list[str]) -> bool:
    """Serving named namespaces only (no glob kopf must resolve) without the right to list
    namespaces."""
    if not namespaces or any(ch in n for n in namespaces for ch in "*?[!"):
        return False
    return not await kube.may("list", "namespaces")


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    configure(settings)
    ours = OperatorSettings()  # read once, here; every handler gets it through memo.runtime
    # The Kubernetes client is synchronous and runs in the loop's default executor, which
    # holds min(32, cpus + 4) threads: 6 on a 2-CPU pod, and the operator benchmark saw a
    # burst of 200 backfills queue behind them. API calls wait on the network, not the CPU.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=ours.api_threads, thread_name_prefix="kube-api")
    )
    api_client = await asyncio.to_thread(load_config, ours.api_threads)
    kube = Kube(api_client)
    if await namespaced_only(kube, ours.namespaces):
        # kopf would list namespaces and watch CRDs cluster-wide first, retrying each refusal
        # 9 times: 54 s before a namespaced operator (rbac.scope=namespaced) served anything.
        # Its --namespace names are exact, so there is nothing to discover.
        settings.scanning.disabled = True
        logger.info("namespaced: serving %s; no cluster-wide discovery", ", ".join(ours.namespaces))
    memo.runtime = Runtime(ours, kube, new_session())
    port = metrics.serve()
    logger.info("geneva-operator started; dashboard URL template %s; metrics on port %s",
                ours.dashboard_url_template, port)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    runtime = memo.get("runtime")
    if runtime is not None:
        await runtime.session.close()
