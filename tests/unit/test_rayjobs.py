"""The Ray Job API client against an in-process fake of Ray 2.60's dashboard (token auth on).
The fake mirrors what a real 2.60 head answers (checked by tests/operator against real Ray):
401 without a token, 403 with a wrong one, 500 "already exists" on a resubmitted id."""
from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest
from aiohttp.test_utils import TestServer

from geneva_operator.api.job_contract import ProgressReport, ResultReport

sys.path.insert(0, str(Path(__file__).parent / "handlers"))
from fakes import TOKEN, FakeRay  # noqa: E402  (shared with the handler tests)
from geneva_operator.rayjobs import (
    BearerToken,
    LogFollower,
    RayJobClient,
    RayUnauthorized,
    RayUnavailable,
    SubmissionRejected,
    new_session,
)

def run(test: Callable[[FakeRay, str], Awaitable[None]]) -> FakeRay:
    fake = FakeRay()

    async def main() -> None:
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        try:
            await test(fake, str(server.make_url("")).rstrip("/"))
        finally:
            await server.close()

    asyncio.run(main())
    return fake


def test_without_token_is_401_and_the_error_says_what_to_do():
    async def body(fake: FakeRay, url: str) -> None:
        async with RayJobClient(url) as ray:
            with pytest.raises(RayUnauthorized) as e:
                await ray.get_job("x")
            assert e.value.status == 401 and "tokenSecretRef" in str(e.value)
        async with RayJobClient(url, token="wrong") as ray:
            with pytest.raises(RayUnauthorized) as e:
                await ray.get_job("x")
            assert e.value.status == 403

    run(body)


def test_ensure_job_submits_once_and_a_restarted_client_finds_it():
    async def body(fake: FakeRay, url: str) -> None:
        kwargs = dict(submission_id="geneva-1-a-1", entrypoint="python -m x", runtime_env={"pip": ["a"]}, metadata={"k": "v"})
        async with RayJobClient(url, token=TOKEN) as ray:
            job, submitted = await ray.ensure_job(**kwargs)
            assert submitted and job.status == "PENDING" and job.submission_id == "geneva-1-a-1"
        fake.jobs["geneva-1-a-1"]["status"] = "RUNNING"
        async with RayJobClient(url, token=TOKEN) as restarted:  # a new operator process
            job, submitted = await restarted.ensure_job(**kwargs)
            assert not submitted and job.status == "RUNNING"
        assert fake.posts == 1
        assert fake.jobs["geneva-1-a-1"]["runtime_env"] == {"pip": ["a"]}
        assert fake.jobs["geneva-1-a-1"]["metadata"] == {"k": "v"}

    run(body)


def test_ensure_job_adopts_the_job_of_a_racing_submitter():
    async def body(fake: FakeRay, url: str) -> None:
        fake.jobs["j"] = {"submission_id": "j", "status": "RUNNING"}
        fake.hide_next_get = True  # our GET misses it; our POST collides (HTTP 500)
        async with RayJobClient(url, token=TOKEN) as ray:
            job, submitted = await ray.ensure_job(submission_id="j", entrypoint="true")
        assert not submitted and job.status == "RUNNING" and fake.posts == 1

    run(body)


def test_plain_submit_of_an_existing_id_is_an_error():
    async def body(fake: FakeRay, url: str) -> None:
        async with RayJobClient(url, token=TOKEN) as ray:
            await ray.submit_job(submission_id="j", entrypoint="true")
            with pytest.raises(RayUnavailable) as e:
                await ray.submit_job(submission_id="j", entrypoint="true")
            assert e.value.status == 500 and "already exists" in str(e.value)

    run(body)


def test_rejected_submission_is_not_retried():
    async def body(fake: FakeRay, url: str) -> None:
        async with RayJobClient(url, token=TOKEN) as ray:
            with pytest.raises(SubmissionRejected):
                await ray.submit_job(submission_id="j", entrypoint=123)  # type: ignore[arg-type]

    run(body)


def test_get_stop_logs_and_missing_jobs():
    async def body(fake: FakeRay, url: str) -> None:
        async with RayJobClient(url, token=TOKEN) as ray:
            assert await ray.get_job("nope") is None
            assert await ray.get_logs("nope") is None
            assert await ray.stop_job("nope") is False
            await ray.submit_job(submission_id="j", entrypoint="true")
            fake.logs["j"] = ["hello\n", ProgressReport(rows_done=1, rows_total=2).line() + "\n"]
            assert "hello" in await ray.get_logs("j")
            assert await ray.stop_job("j") is True
            assert (await ray.get_job("j")).status == "STOPPED" and (await ray.get_job("j")).terminal
            assert await ray.stop_job("j") is False

    run(body)


def test_log_follower_streams_progress_across_split_chunks():
    async def body(fake: FakeRay, url: str) -> None:
        line1 = ProgressReport(rows_done=10, rows_total=100, fragments_done=1, fragments_total=10).line()
        line2 = ResultReport(rows_done=100, rows_total=100, committed_version=4).line()
        text = f"starting\n{line1}\nnoise\n{line2}"  # no final newline: the last line still counts
        fake.jobs["j"] = {"submission_id": "j", "status": "RUNNING"}
        fake.logs["j"] = [text[:20], text[20:45], text[45:]]
        follower = LogFollower("j")
        async with RayJobClient(url, token=TOKEN) as ray:
            await follower.follow(ray)
        assert follower.finished and follower.updates == 2
        assert follower.progress == ResultReport(rows_done=100, rows_total=100, committed_version=4)
        assert follower.tail().splitlines()[0] == "starting"

    run(body)


def test_unreachable_dashboard_is_unavailable():
    async def main() -> None:
        async with RayJobClient("http://127.0.0.1:9", token=TOKEN, timeout=2) as ray:
            with pytest.raises(RayUnavailable) as e:
                await ray.get_job("x")
            assert TOKEN not in str(e.value) and TOKEN not in repr(e.value)
            with pytest.raises(RayUnavailable):
                async for _ in ray.tail_logs("x"):
                    pass

    asyncio.run(main())


def test_the_token_never_shows(caplog):
    caplog.set_level(logging.DEBUG)
    token = BearerToken(TOKEN)
    assert TOKEN not in repr(token) and TOKEN not in str(token) and TOKEN not in f"{token}"
    errors: list[BaseException] = []

    async def body(fake: FakeRay, url: str) -> None:
        async with RayJobClient(url, token=token) as ray:
            assert TOKEN not in repr(ray)
            await ray.ensure_job(submission_id="j", entrypoint="true")
            await ray.get_logs("j")
            await ray.stop_job("j")
        async with RayJobClient(url, token="not-" + TOKEN) as wrong:
            try:
                await wrong.get_job("j")
            except RayUnauthorized as e:
                errors.append(e)

    run(body)
    assert errors and all(TOKEN not in f"{e!s} {e!r}" for e in errors)
    assert TOKEN not in caplog.text


def test_job_requests_do_not_queue_behind_many_open_log_tails():
    """Every running job's log tail holds a connection for the job's lifetime; a request
    must not wait for one of them to end (aiohttp caps a session at 100 by default)."""
    async def body(fake: FakeRay, url: str) -> None:
        fake.jobs_end = asyncio.Event()
        async with new_session() as session:
            client = RayJobClient(url, token=TOKEN, session=session, timeout=5)
            await client.submit_job(entrypoint="python -c pass", submission_id="job-a")
            tails = [asyncio.ensure_future(LogFollower("job-a").follow(client)) for _ in range(120)]

            async def all_open() -> None:
                while fake.tails_open < 120:
                    await asyncio.sleep(0.05)

            try:
                try:
                    await asyncio.wait_for(all_open(), timeout=10)
                except asyncio.TimeoutError:
                    pytest.fail(f"only {fake.tails_open} of 120 log tails got a connection")
                info = await asyncio.wait_for(client.get_job("job-a"), timeout=3)
                assert info is not None and info.status == "PENDING"
            finally:
                fake.jobs_end.set()
                await asyncio.wait_for(asyncio.gather(*tails, return_exceptions=True), timeout=10)

    run(body)
