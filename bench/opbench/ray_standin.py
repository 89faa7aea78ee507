"""A stand-in of the Ray Job Submission REST API subset the operator uses (rayjobs.py).

Why a stand-in: 200 real Ray jobs need 200 driver processes (and a Ray head per RayCluster),
which a 2-core machine cannot run; what the benchmark measures is the operator, so the job
backend only has to answer like Ray's dashboard and let the benchmark decide -- and record --
the instant each job turns terminal.

Served under a per-cluster prefix so the operator's GENEVA_DASHBOARD_URL_TEMPLATE can be
`http://127.0.0.1:P/c/{namespace}/{cluster}`:

  GET  /api/version                    POST /api/jobs/ (submission_id, entrypoint, metadata)
  GET  /api/jobs/                      GET  /api/jobs/{id}   (404 if unknown)
  POST /api/jobs/{id}/stop             DELETE /api/jobs/{id}
  GET  /api/jobs/{id}/logs             websocket /api/jobs/{id}/logs/tail

Bearer token auth like Ray 2.60 (`RAY_AUTH_MODE=token`): 401 without a token, 403 with a
wrong one. A resubmitted id answers 500 "already exists", as Ray does.

Job timeline (what a Ray job of the backfill engine looks like from the API):
PENDING for `pending_s`, RUNNING for `duration_s(job)` while a GENEVA_PROGRESS line is
appended every `progress_every_s`; then the driver prints GENEVA_RESULT, and
`result_to_terminal_s` later (the driver exiting, the supervisor recording it) the status
becomes SUCCEEDED: that instant (time.time()) is `terminal_at`, the origin of the status lag.
The log tail behaves like Ray's JobManager.tail_job_logs: it sends new lines as they appear,
polls every LOG_TAIL_SLEEP_S (1 s) when there is nothing new, and closes once the job is
terminal and the log fully sent.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import aiohttp
from aiohttp import web

from geneva_operator.api.job_contract import ProgressReport, ResultReport

LOG_TAIL_SLEEP_S = 1.0  # Ray's JobManager.LOG_TAIL_SLEEP_S


@dataclass
class Job:
    submission_id: str
    cluster: str  # namespace/cluster from the URL prefix
    entrypoint: str
    metadata: dict
    submitted_at: float
    status: str = "PENDING"
    message: str = "Job has not started yet."
    start_time: Optional[int] = None
    end_time: Optional[int] = None
    running_at: Optional[float] = None
    result_at: Optional[float] = None
    terminal_at: Optional[float] = None
    lines: list[str] = field(default_factory=list)
    requests: int = 0
    gets: list[tuple[float, str]] = field(default_factory=list)  # (time, status answered) of each GET

    def to_json(self) -> dict:
        return {
            "type": "SUBMISSION", "job_id": None, "submission_id": self.submission_id,
            "driver_info": None, "status": self.status, "entrypoint": self.entrypoint,
            "message": self.message, "error_type": None, "start_time": self.start_time,
            "end_time": self.end_time, "metadata": self.metadata, "runtime_env": {},
            "driver_agent_http_address": None, "driver_node_id": None,
            "driver_exit_code": 0 if self.status == "SUCCEEDED" else None,
        }


def _progress(done: int, total: int, rows_per_fragment: int = 1000) -> dict:
    """The counts of a job `done` fragments of `total` in (keyword arguments of the reports)."""
    return {"fragments_done": done, "fragments_total": total, "rows_done": done * rows_per_fragment,
            "rows_total": total * rows_per_fragment, "table_version": 1 + done}


class RayStandIn:
    def __init__(self, token: Optional[str], duration_s: Callable[[Job], float], pending_s: float = 1.0,
                 progress_every_s: float = 2.0, result_to_terminal_s: float = 0.2):
        self.token = token
        self.duration_s = duration_s
        self.pending_s = pending_s
        self.progress_every_s = progress_every_s
        self.result_to_terminal_s = result_to_terminal_s
        self.jobs: dict[str, Job] = {}
        self.requests = 0
        self.by_route: dict[str, int] = {}
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.port: Optional[int] = None
        self._runner: Optional[web.AppRunner] = None
        self._thread: Optional[threading.Thread] = None
        self._tasks: set[asyncio.Task] = set()

    # ---- auth and routing

    def _check(self, request: web.Request, route: str) -> Optional[web.Response]:
        self.requests += 1
        self.by_route[route] = self.by_route.get(route, 0) + 1
        if self.token is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return web.Response(status=401, text="Unauthorized: missing authentication token")
        if header != f"Bearer {self.token}":
            return web.Response(status=403, text="Forbidden: invalid authentication token")
        return None

    def _cluster(self, request: web.Request) -> str:
        return f"{request.match_info['ns']}/{request.match_info['cluster']}"

    async def version(self, request: web.Request) -> web.Response:
        return self._check(request, "version") or web.json_response(
            {"version": "4", "ray_version": "2.60.0", "ray_commit": "standin", "session_name": "standin"})

    async def list_jobs(self, request: web.Request) -> web.Response:
        c = self._cluster(request)
        return self._check(request, "list") or web.json_response(
            [j.to_json() for j in self.jobs.values() if j.cluster == c])

    async def submit(self, request: web.Request) -> web.Response:
        denied = self._check(request, "submit")
        if denied:
            return denied
        body = await request.json()
        sid = body.get("submission_id") or f"raysubmit_{len(self.jobs)}"
        if sid in self.jobs:
            return web.Response(status=500, text=f"Job with submission_id {sid} already exists. Please use a different submission_id.")
        job = Job(sid, self._cluster(request), body.get("entrypoint", ""), dict(body.get("metadata") or {}), time.time())
        self.jobs[sid] = job
        task = asyncio.get_running_loop().create_task(self._run(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return web.json_response({"submission_id": sid})

    def _job(self, request: web.Request) -> Optional[Job]:
        job = self.jobs.get(request.match_info["id"])
        if job is not None and job.cluster != self._cluster(request):
            return None
        if job is not None:
            job.requests += 1
        return job

    async def get_job(self, request: web.Request) -> web.Response:
        denied = self._check(request, "get")
        if denied:
            return denied
        job = self._job(request)
        if job is None:
            return web.Response(status=404, text=f"Job {request.match_info['id']} does not exist")
        job.gets.append((time.time(), job.status))
        return web.json_response(job.to_json())

    async def stop_job(self, request: web.Request) -> web.Response:
        denied = self._check(request, "stop")
        if denied:
            return denied
        job = self._job(request)
        if job is None:
            return web.Response(status=404, text="not found")
        if job.status in ("STOPPED", "SUCCEEDED", "FAILED"):
            return web.json_response({"stopped": False})
        self._terminal(job, "STOPPED", "Job was intentionally stopped.")
        return web.json_response({"stopped": True})

    async def delete(self, request: web.Request) -> web.Response:
        denied = self._check(request, "delete")
        if denied:
            return denied
        job = self._job(request)
        if job is None:
            return web.Response(status=404, text="not found")
        self.jobs.pop(job.submission_id, None)
        return web.json_response({"deleted": True})

    async def logs(self, request: web.Request) -> web.Response:
        denied = self._check(request, "logs")
        if denied:
            return denied
        job = self._job(request)
        if job is None:
            return web.Response(status=404, text="not found")
        return web.json_response({"logs": "".join(line + "\n" for line in job.lines)})

    async def tail(self, request: web.Request) -> web.StreamResponse:
        denied = self._check(request, "tail")
        if denied:
            return denied
        job = self._job(request)
        if job is None:
            return web.Response(status=404, text="not found")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sent, finished = 0, False
        try:
            while not ws.closed:
                if sent < len(job.lines):
                    chunk = "".join(line + "\n" for line in job.lines[sent:])
                    sent = len(job.lines)
                    try:
                        await ws.send_str(chunk)
                    except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                        break  # the operator went away (its log follower was cancelled)
                    continue
                if finished:
                    break
                finished = job.terminal_at is not None  # one more read after the end, like Ray
                await asyncio.sleep(LOG_TAIL_SLEEP_S)
        finally:
            await ws.close()
        return ws

    # ---- the job's life

    def _terminal(self, job: Job, status: str, message: str) -> None:
        job.status, job.message = status, message
        job.end_time = int(time.time() * 1000)
        job.terminal_at = time.time()

    async def _run(self, job: Job) -> None:
        await asyncio.sleep(self.pending_s)
        if job.terminal_at is not None:
            return
        job.status, job.message = "RUNNING", "Job is currently running."
        job.running_at = time.time()
        job.start_time = int(job.running_at * 1000)
        job.lines.append(f"-- stand-in driver of {job.metadata.get('geneva.lancedb.com/backfill', job.submission_id)}")
        duration = self.duration_s(job)
        total = max(1, int(duration / self.progress_every_s))
        for done in range(total):
            await asyncio.sleep(duration / total)
            if job.terminal_at is not None:
                return
            job.lines.append(ProgressReport(**_progress(done + 1, total + 1)).line())
        counts = _progress(total + 1, total + 1)
        job.lines.append(ResultReport(**counts, committed_version=counts["table_version"]).line())
        job.result_at = time.time()
        await asyncio.sleep(self.result_to_terminal_s)
        if job.terminal_at is None:
            self._terminal(job, "SUCCEEDED", "Job finished successfully.")

    # ---- server in a background thread

    def app(self) -> web.Application:
        app = web.Application()
        p = "/c/{ns}/{cluster}/api"
        app.add_routes([
            web.get(p + "/version", self.version),
            web.get(p + "/jobs/", self.list_jobs),
            web.post(p + "/jobs/", self.submit),
            web.get(p + "/jobs/{id}", self.get_job),
            web.post(p + "/jobs/{id}/stop", self.stop_job),
            web.delete(p + "/jobs/{id}", self.delete),
            web.get(p + "/jobs/{id}/logs", self.logs),
            web.get(p + "/jobs/{id}/logs/tail", self.tail),
        ])
        return app

    def start(self, port: int) -> "RayStandIn":
        ready = threading.Event()

        async def serve() -> None:
            self._runner = web.AppRunner(self.app(), handle_signals=False)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", port).start()
            self.port = port
            ready.set()

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(serve())
            self.loop.run_forever()

        self._thread = threading.Thread(target=run, name="ray-standin", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("Ray stand-in did not start")
        return self

    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.port}/c/{{namespace}}/{{cluster}}"

    def stop(self) -> None:
        if self.loop is None:
            return

        async def shutdown() -> None:
            for t in list(self._tasks):
                t.cancel()
            if self._runner is not None:
                await self._runner.cleanup()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._thread is not None:
            self._thread.join(10)
