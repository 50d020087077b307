"""`tasks.wait()` and `tme task wait` return an outcome only once it is settled: a
failure whose automatic retry TME has not planned yet is not the task's last word.

The controller's scheduling loop is stopped, so the retry is planned only when a test
steps it by hand: the window between the failure and its retry, milliseconds long in a
running controller, stays open for as long as the test needs."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner
from waiting import wait_until, wait_until_async

import tme
from tme.cli.main import app as cli_app
from tme.schemas import TaskPublic

RETRY_AT_ONCE = {"max": 1, "backoff_s": 0, "jitter": 0}


def held_scheduling(app: Any) -> Any:
    """The app's scheduling with its loop stopped: nothing settles until `step()`."""
    scheduling = app.state.runtime.scheduling
    scheduling.stop()
    return scheduling


def retry_and_succeed(scheduling: Any, client: tme.Client, task_id: int) -> None:
    """Settle the failure (its retry is planned), start the retry, report it succeeded,
    settle that."""
    scheduling.step(housekeeping=False)
    assert client.tasks.get(task_id).status == "waiting"  # the planned retry
    scheduling.step()  # its time has come: it starts
    client.tasks.report(task_id, "complete")
    scheduling.step(housekeeping=False)


def failed_with_a_retry_to_come(client: tme.Client) -> TaskPublic:
    task = client.tasks.create(name=f"wait-{uuid.uuid4().hex[:10]}", retries=RETRY_AT_ONCE)
    client.tasks.report(task.id, "fail")
    failed = client.tasks.get(task.id)
    assert (failed.status, failed.settled) == ("failed", False)
    return failed


def test_wait_returns_the_retried_outcome_not_the_failure_before_the_retry(
    app: Any, live_url: str
) -> None:
    scheduling = held_scheduling(app)
    with tme.Client(live_url) as waiter, tme.Client(live_url) as driver:
        task = failed_with_a_retry_to_come(driver)
        seen: list[tuple[str, bool]] = []
        original_get = waiter.tasks.get

        def get_and_note(task_id: int) -> TaskPublic:
            found = original_get(task_id)
            seen.append((found.status, found.settled))
            return found

        waiter.tasks.get = get_and_note  # type: ignore[method-assign]
        result: dict[str, TaskPublic] = {}
        thread = threading.Thread(
            target=lambda: result.update(task=waiter.tasks.wait(task.id, timeout=30, poll_s=0.01))
        )
        thread.start()
        # A second look at the failure means the first did not end the wait.
        wait_until(
            lambda: seen.count(("failed", False)) >= 2 or not thread.is_alive(),
            what="wait() to look at the failure twice",
        )
        assert thread.is_alive(), f"wait() returned {result} before the retry was planned"
        retry_and_succeed(scheduling, driver, task.id)
        thread.join(10)
        assert not thread.is_alive()
    done = result["task"]
    assert (done.status, done.settled) == ("succeeded", True)
    assert done.latest_run_id != task.latest_run_id  # the retry's outcome


async def test_async_wait_returns_the_retried_outcome(app: Any, test_client: Any) -> None:
    scheduling = held_scheduling(app)
    transport = httpx.ASGITransport(app=app)
    headers = dict(test_client.headers)
    http = httpx.AsyncClient(transport=transport, base_url="http://tme.test", headers=headers)
    with tme.Client(http_client=test_client) as driver:
        task = failed_with_a_retry_to_come(driver)
        async with http, tme.AsyncClient(http_client=http) as aclient:
            looks: list[str] = []
            original_get = aclient.tasks.get

            async def get_and_note(task_id: int) -> TaskPublic:
                found = await original_get(task_id)
                looks.append(found.status)
                return found

            aclient.tasks.get = get_and_note  # type: ignore[method-assign]
            waiting = asyncio.create_task(aclient.tasks.wait(task.id, timeout=30, poll_s=0.01))
            await wait_until_async(
                lambda: looks.count("failed") >= 2 or waiting.done(),
                what="wait() to look at the failure twice",
            )
            assert not waiting.done(), f"wait() returned {waiting.result()} before the retry"
            await asyncio.to_thread(retry_and_succeed, scheduling, driver, task.id)
            done = await asyncio.wait_for(waiting, 10)
    assert (done.status, done.settled) == ("succeeded", True)


def test_wait_without_a_scheduler_times_out_saying_the_outcome_is_not_settled(
    app: Any, test_client: Any
) -> None:
    held_scheduling(app)  # as when no controller holds the scheduler lease
    with tme.Client(http_client=test_client) as client:
        task = failed_with_a_retry_to_come(client)
        with pytest.raises(TimeoutError, match=f"task {task.id} 'failed' after 0.2s, but not"):
            client.tasks.wait(task.id, timeout=0.2, poll_s=0.05)


def test_cli_wait_exits_with_the_retried_outcome(app: Any, live_url: str) -> None:
    scheduling = held_scheduling(app)
    runner = CliRunner()
    with tme.Client(live_url) as client:
        task = failed_with_a_retry_to_come(client)
        early = runner.invoke(cli_app, ["task", "wait", str(task.id), "--url", live_url,
                                        "--timeout", "0.3"])  # fmt: skip
        assert early.exit_code == 1
        assert early.stdout == ""  # no "task N failed": that was not its outcome
        assert "but not settled" in early.stderr and "retry may still follow" in early.stderr
        retry_and_succeed(scheduling, client, task.id)
    done = runner.invoke(cli_app, ["task", "wait", str(task.id), "--url", live_url])
    assert done.exit_code == 0, done.stderr
    assert done.stdout.strip() == f"task {task.id} succeeded"
