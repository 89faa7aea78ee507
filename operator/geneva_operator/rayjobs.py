"""Async client of the Ray Job Submission REST API, and the progress mechanism built on it.

Endpoints (Ray 2.60, served by the head's dashboard, default :8265):
POST /api/jobs/ (submission_id, entrypoint, runtime_env, metadata), GET /api/jobs/{id},
POST /api/jobs/{id}/stop, GET /api/jobs/{id}/logs, websocket GET /api/jobs/{id}/logs/tail.

Authentication: Ray 2.60 turns token authentication on by default (`RAY_AUTH_MODE=token`);
the dashboard then answers 401 to a request without `Authorization: Bearer <token>` and 403
to a wrong token. A local head gets its token from `RAY_AUTH_TOKEN` (or the file named by
`RAY_AUTH_TOKEN_PATH`, or ~/.ray/auth_token). The operator reads the token from the Secret
named by `spec.auth.tokenSecretRef` and sends it as a bearer token. The token lives only in
`BearerToken`, whose repr/str are redacted, and is never logged, put in an exception, the
resource, its status or an Event.

Idempotent submission: resubmitting an existing submission id is an error in Ray (HTTP 500,
"already exists"), so `ensure_job` GETs the id first and adopts a job that already exists;
a lost race (POST answering "already exists") is resolved the same way.

Progress, with least privilege: the backfill job prints a progress report line after each
commit and a result report line at the end (api.job_contract). The operator follows the
driver log through the Ray Job API: `LogFollower` streams the websocket
`/api/jobs/{id}/logs/tail` while the job runs (a new line reaches the operator about a second
after it is printed; the tail replays the log from its start, so a restarted operator recovers
the newest progress), and the final `GET /api/jobs/{id}/logs` reads the result and the log
tail of a finished job. So the Ray pods need no Kubernetes RBAC at all (their service account
needs no Role), and the operator needs network access to the head's dashboard port plus the
token; it never needs `pods/log` or `pods/exec`.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Optional, Union

import aiohttp

from .api.job_contract import ProgressReport, RayJobState, ResultReport, parse_report

logger = logging.getLogger(__name__)

_MAX_ERROR_TEXT = 400  # Ray error bodies are whole tracebacks
# A submission waits for the head's job agent and starts the job supervisor actor: tens of
# seconds on a busy or fresh head. A timed-out submission may still go through, which
# `ensure_job` (GET before POST) absorbs on the next attempt.
SUBMIT_TIMEOUT_SECONDS = 60.0


class RayJobError(Exception):
    """A request to the Ray Job API failed. `status` is the HTTP status, None for transport errors."""

    def __init__(self, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.status = status


class RayUnauthorized(RayJobError):
    """401 (no token) or 403 (wrong token)."""


class RayUnavailable(RayJobError):
    """The dashboard did not answer usefully: connection refused, timeout, 5xx. Retry later."""


class SubmissionRejected(RayJobError):
    """Ray rejected the submission itself (400: bad runtime_env, entrypoint...). Do not retry."""


class BearerToken:
    """A Ray dashboard token that cannot leak through repr, str, logs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        value = value.strip()
        if not value:
            raise ValueError("empty token")
        self._value = value

    def header(self) -> str:
        return "Bearer " + self._value

    def __repr__(self) -> str:
        return "BearerToken(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BearerToken) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class JobInfo:
    submission_id: str
    status: str  # as Ray sent it; `state` is None for a status this operator does not know
    message: str = ""
    error_type: Optional[str] = None
    start_time: Optional[int] = None  # ms since epoch
    end_time: Optional[int] = None
    driver_exit_code: Optional[int] = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def state(self) -> Optional[RayJobState]:
        return RayJobState.of(self.status)

    @property
    def terminal(self) -> bool:
        return self.state is not None and self.state.terminal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "JobInfo":
        return cls(
            submission_id=d.get("submission_id") or d.get("job_id") or "",
            status=str(d.get("status", "")).upper(),
            message=d.get("message") or "",
            error_type=d.get("error_type"),
            start_time=d.get("start_time"),
            end_time=d.get("end_time"),
            driver_exit_code=d.get("driver_exit_code"),
            metadata=dict(d.get("metadata") or {}),
        )


def _short(text: str) -> str:
    text = text.strip()
    if len(text) > _MAX_ERROR_TEXT:
        text = "..." + text[-_MAX_ERROR_TEXT:]
    return text


def new_session() -> aiohttp.ClientSession:
    """The HTTP session for Ray dashboards. Without aiohttp's default cap of 100 connections:
    every running job's log tail holds one for the job's lifetime, and past 100 of them the
    job GETs queued behind the tails until their timeout (the operator benchmark measured a
    status lag p95 of 11 s at 200 backfills). Connections stay bounded by the backfills: one
    tail each, and one request at a time (reconciles of a resource take its lock)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


class RayJobClient:
    """One Ray cluster's Job API. Pass a shared `session` (the operator keeps one); without
    one the client owns a private session, closed by `close()` / `async with`."""

    def __init__(
        self,
        address: str,
        *,
        token: Union[BearerToken, str, None] = None,
        session: Optional[aiohttp.ClientSession] = None,
        timeout: float = 10.0,
    ):
        self.address = address.rstrip("/")
        self._token = BearerToken(token) if isinstance(token, str) else token
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"RayJobClient({self.address!r}, token={'<redacted>' if self._token else None})"

    async def __aenter__(self) -> "RayJobClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session()
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": self._token.header()} if self._token else {}

    async def _request(
        self, method: str, path: str, *, json: Any = None, ok404: bool = False, timeout: Optional[float] = None
    ) -> Any:
        url = self.address + path
        limit = aiohttp.ClientTimeout(total=timeout) if timeout is not None else self._timeout
        try:
            async with self._http().request(method, url, json=json, headers=self._headers(), timeout=limit) as resp:
                text = await resp.text()
                if resp.status == 404 and ok404:
                    return None
                if resp.status in (401, 403):
                    raise RayUnauthorized(
                        f"{method} {path}: HTTP {resp.status} "
                        + ("(no token sent: set spec.auth.tokenSecretRef)" if not self._token else "(token rejected)"),
                        resp.status,
                    )
                if resp.status >= 400:
                    kind = RayUnavailable if resp.status >= 500 else RayJobError
                    raise kind(f"{method} {path}: HTTP {resp.status}: {_short(text)}", resp.status)
                return await _json(text, f"{method} {path}")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            # The exception text never carries request headers (aiohttp's request_info
            # would), only its type and message.
            raise RayUnavailable(f"{method} {url}: {type(e).__name__}: {e}") from None

    # -- the API

    async def get_job(self, submission_id: str) -> Optional[JobInfo]:
        data = await self._request("GET", f"/api/jobs/{submission_id}", ok404=True)
        return JobInfo.from_json(data) if data is not None else None

    async def submit_job(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        runtime_env: Optional[dict[str, Any]] = None,
        metadata: Optional[dict[str, str]] = None,
    ) -> str:
        body: dict[str, Any] = {"submission_id": submission_id, "entrypoint": entrypoint}
        if runtime_env:
            body["runtime_env"] = runtime_env
        if metadata:
            body["metadata"] = metadata
        try:
            timeout = max(SUBMIT_TIMEOUT_SECONDS, self._timeout.total or 0)
            data = await self._request("POST", "/api/jobs/", json=body, timeout=timeout)
        except RayJobError as e:
            if e.status == 400:
                raise SubmissionRejected(str(e), 400) from None
            raise
        return data.get("submission_id") or submission_id

    async def ensure_job(
        self,
        *,
        submission_id: str,
        entrypoint: str,
        runtime_env: Optional[dict[str, Any]] = None,
        metadata: Optional[dict[str, str]] = None,
    ) -> tuple[JobInfo, bool]:
        """Submit unless a job with this id exists. Returns (job, submitted_now)."""
        existing = await self.get_job(submission_id)
        if existing is not None:
            return existing, False
        try:
            await self.submit_job(
                submission_id=submission_id, entrypoint=entrypoint, runtime_env=runtime_env, metadata=metadata
            )
        except RayUnavailable as e:
            # Ray answers 500 "already exists" when another submitter won the race, and
            # a timeout may hide a submission that went through: look again before failing.
            existing = await self.get_job(submission_id)
            if existing is not None:
                return existing, False
            raise e
        job = await self.get_job(submission_id)
        return job or JobInfo(submission_id=submission_id, status=RayJobState.PENDING.value), True

    async def stop_job(self, submission_id: str) -> bool:
        """Ask Ray to stop the job. False if it does not exist or Ray knew it had finished;
        just after a job ends Ray may still answer True (its supervisor actor lingers), so
        callers must treat stopping as idempotent and read the status, not this value."""
        data = await self._request("POST", f"/api/jobs/{submission_id}/stop", ok404=True)
        return bool(data and data.get("stopped"))

    async def delete_job(self, submission_id: str) -> bool:
        data = await self._request("DELETE", f"/api/jobs/{submission_id}", ok404=True)
        return bool(data and data.get("deleted"))

    async def get_logs(self, submission_id: str) -> Optional[str]:
        """The whole driver log; None if the job does not exist."""
        data = await self._request("GET", f"/api/jobs/{submission_id}/logs", ok404=True)
        return None if data is None else str(data.get("logs", ""))

    async def tail_logs(self, submission_id: str) -> AsyncIterator[str]:
        """Driver log chunks as Ray writes them, from the start of the log, until the job ends."""
        url = f"{self.address}/api/jobs/{submission_id}/logs/tail"
        try:
            async with self._http().ws_connect(url, headers=self._headers(), heartbeat=30) as ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        yield msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
        except aiohttp.WSServerHandshakeError as e:
            if e.status in (401, 403):
                raise RayUnauthorized(f"tail {submission_id}: HTTP {e.status}", e.status) from None
            raise RayUnavailable(f"tail {submission_id}: HTTP {e.status}", e.status) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            raise RayUnavailable(f"tail {submission_id}: {type(e).__name__}: {e}") from None


async def _json(text: str, what: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        raise RayUnavailable(f"{what}: not JSON: {_short(text)}") from None


class LogFollower:
    """Reads one job's driver log: the newest report and the last lines.

    Feed it chunks (`feed`) or let it stream the websocket tail (`follow`). Chunks may cut
    a line in two (Ray sends at most 20000 characters at a time): the partial line waits.
    """

    def __init__(self, submission_id: str, keep_lines: int = 30,
                 on_news: Optional[Callable[[bool], None]] = None):
        """`on_news(final)`: called for each report line, final for the result line, and
        once more, final, when the log ends."""
        self.submission_id = submission_id
        self._on_news = on_news
        self.progress: Optional[ProgressReport] = None
        self.lines: deque[str] = deque(maxlen=keep_lines)
        self.updates = 0  # reports seen; lets readers notice news cheaply
        self.finished = False  # the tail ended (Ray closes it when the job is over)
        self._partial = ""

    def feed(self, chunk: str) -> None:
        text = self._partial + chunk
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: str) -> None:
        line = line.rstrip("\r")
        self.lines.append(line)
        report = parse_report(line)
        if report is not None:
            self.progress = report
            self.updates += 1
            self._news(isinstance(report, ResultReport))

    def _news(self, final: bool) -> None:
        if self._on_news is not None:
            self._on_news(final)

    def tail(self) -> str:
        return "\n".join(self.lines)

    async def follow(self, client: RayJobClient) -> None:
        """Stream until the job's log ends; raises RayJobError on transport trouble."""
        async for chunk in client.tail_logs(self.submission_id):
            self.feed(chunk)
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        self.finished = True
        self._news(True)
