"""A pytest run stopped with SIGTERM (`kill`, a CI job's timeout) tears down like one stopped
with Ctrl-C: pytest then runs the fixtures' finalizers, which stop the control planes, nodes
and local Rays the run started. SIGTERM's default action ends the process at once and leaves
them all running, holding ports, memory and mounts for the next run to trip over.

Registered by tests/conftest.py; `pytest -p tests.sigterm` elsewhere."""
from __future__ import annotations

import signal
from typing import Any


def _interrupt(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM: at once, as before
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: Any) -> None:
    signal.signal(signal.SIGTERM, _interrupt)
