"""The Ray job client against a real Ray 2.60 head (token auth on): submit, find again by
id, progress lines through the log API and the websocket tail, stop."""
from __future__ import annotations

import asyncio
import sys
import time
from typing import Awaitable, Callable, TypeVar

import aiohttp
import pytest

from geneva_operator.api.job_contract import ProgressReport, ResultReport, last_report
from geneva_operator.rayjobs import JobInfo, LogFollower, RayJobClient, RayUnauthorized, RayUnavailable

T = TypeVar("T")

# A stand-in for the engine: prints three progress lines and a result, as the engine does.
PROGRESS_SCRIPT = (
    "import time\n"
    "from geneva_operator.api.job_contract import ProgressReport, ResultReport\n"
    "for i in range(1, 4):\n"
    "    print(ProgressReport(rows_done=i * 100, rows_total=300, fragments_done=i, fragments_total=3).line(), flush=True)\n"
    "    time.sleep(0.5)\n"
    "print(ResultReport(rows_done=300, rows_total=300, committed_version=5).line(), flush=True)\n"
)


def progress_entrypoint() -> str:
    import shlex

    return f"python -c {shlex.quote(PROGRESS_SCRIPT)}"


def arun(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)


async def wait_for(client: RayJobClient, sid: str, done: Callable[[JobInfo], bool], timeout: float = 120) -> JobInfo:
    deadline = time.monotonic() + timeout
    while True:
        job = await client.get_job(sid)
        if job is not None and done(job):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {sid} did not get there in {timeout}s: {job}")
        await asyncio.sleep(0.5)


def test_token_is_required(local_ray):
    async def main() -> None:
        async with RayJobClient(local_ray.address) as anonymous:
            with pytest.raises(RayUnauthorized) as e:
                await anonymous.get_job("anything")
            assert e.value.status == 401
        async with RayJobClient(local_ray.address, token="wrong-token") as wrong:
            with pytest.raises(RayUnauthorized) as e:
                await wrong.get_job("anything")
            assert e.value.status == 403
        async with RayJobClient(local_ray.address, token=local_ray.token) as ray:
            assert await ray.get_job("geneva-never-submitted-1") is None

    arun(main())


def test_submit_find_again_and_read_progress(local_ray):
    sid = f"geneva-test-{int(time.time())}-1"

    async def main() -> None:
        async with RayJobClient(local_ray.address, token=local_ray.token) as ray:
            job, submitted = await ray.ensure_job(
                submission_id=sid,
                entrypoint=progress_entrypoint(),
                runtime_env={"env_vars": {"GENEVA_TEST": "1"}},
                metadata={"geneva.lancedb.com/backfill": "ns/bf"},
            )
            assert submitted and job.submission_id == sid
            # Ray itself refuses a second submission of the id (HTTP 500) ...
            with pytest.raises(RayUnavailable) as e:
                await ray.submit_job(submission_id=sid, entrypoint="true")
            assert e.value.status == 500 and "already exists" in str(e.value)

        # ... and a restarted operator (new client, new session) finds the job instead.
        async with RayJobClient(local_ray.address, token=local_ray.token) as restarted:
            again, submitted = await restarted.ensure_job(submission_id=sid, entrypoint="never-run")
            assert not submitted and again.metadata == {"geneva.lancedb.com/backfill": "ns/bf"}

            follower = LogFollower(sid)
            await asyncio.wait_for(follower.follow(restarted), timeout=120)  # ends with the job
            assert follower.progress == ResultReport(rows_done=300, rows_total=300, committed_version=5)
            assert follower.updates == 4

            final = await wait_for(restarted, sid, lambda j: j.terminal)
            assert final.status == "SUCCEEDED"
            logs = await restarted.get_logs(sid)
            assert last_report(logs) == ResultReport(rows_done=300, rows_total=300, committed_version=5)
            assert ProgressReport(fragments_done=2, fragments_total=3, rows_done=200, rows_total=300).line() in logs

    arun(main())


def test_stop_a_running_job(local_ray):
    sid = f"geneva-stop-{int(time.time())}-1"

    async def main() -> None:
        async with RayJobClient(local_ray.address, token=local_ray.token) as ray:
            await ray.ensure_job(submission_id=sid, entrypoint="python -c 'import time; print(\"started\", flush=True); time.sleep(600)'")
            await wait_for(ray, sid, lambda j: j.status == "RUNNING")
            assert await ray.stop_job(sid) is True
            stopped = await wait_for(ray, sid, lambda j: j.terminal, timeout=60)
            assert stopped.status == "STOPPED"
            # Stopping again is harmless: no error, the job stays STOPPED (Ray's answer to the
            # second stop races its supervisor actor's exit, so only the outcome is asserted).
            await ray.stop_job(sid)
            assert (await ray.get_job(sid)).status == "STOPPED"
            assert await ray.stop_job("geneva-never-submitted-1") is False
            assert "started" in (await ray.get_logs(sid))

    arun(main())


def test_failed_job_reports_message_and_log_tail(local_ray):
    sid = f"geneva-fail-{int(time.time())}-1"

    async def main() -> None:
        async with RayJobClient(local_ray.address, token=local_ray.token) as ray:
            await ray.ensure_job(submission_id=sid, entrypoint="python -c 'import sys; print(\"boom here\"); sys.exit(3)'")
            failed = await wait_for(ray, sid, lambda j: j.terminal)
            assert failed.status == "FAILED" and failed.driver_exit_code == 3
            assert "boom here" in await ray.get_logs(sid)

    arun(main())
