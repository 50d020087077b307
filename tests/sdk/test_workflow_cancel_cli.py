"""Canceling a workflow run with the SDK (sync and async) and with `tme run cancel
--workflow`, against the app: its runs are canceled, its steps to come skipped."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from cli_lines import one_line_error
from typer.testing import CliRunner
from waiting import wait_until

import tme
from tme.cli.main import app as cli_app
from tme.errors import Conflict


def _chain(client: tme.Client, trigger: str) -> tuple[str, int]:
    """A batch bound to `trigger` and its alarm on failure; the workflow run fired and the
    alarm's task id."""
    batch = client.tasks.create(name="batch", trigger=trigger)
    alarm = client.tasks.create(name="alarm", depends_on=[{"task": batch.id, "on": "failure"}])
    (run,) = client.triggers.fire(trigger).runs
    return run.id, alarm.id


def _skipped_alarm(client: tme.Client, workflow_id: str, alarm: int) -> str:
    def reason() -> str | None:
        steps = [r for r in client.runs.workflow(workflow_id) if r.task_id == alarm]
        return steps[0].reason if steps and steps[0].state == "skipped" else None

    found = wait_until(reason, what="the alarm skipped")
    return str(found)


def test_sdk_cancels_a_workflow_run_and_refuses_one_that_is_over(test_client: Any) -> None:
    with tme.Client(http_client=test_client) as client:
        workflow_id, alarm = _chain(client, "sdk")
        done = client.runs.cancel_workflow(workflow_id)
        assert (done.workflow_id, done.canceled_by) == (workflow_id, "admin")
        assert [(r.id, r.state) for r in done.runs] == [(workflow_id, "canceled")]
        why = f"workflow run {workflow_id} canceled by admin"
        assert _skipped_alarm(client, workflow_id, alarm) == why
        wait_until(
            lambda: all(r.settled for r in client.runs.workflow(workflow_id)),
            what="the workflow run over",
        )
        with pytest.raises(Conflict, match="nothing was running"):
            client.runs.cancel_workflow(workflow_id)


async def test_async_sdk_cancels_a_workflow_run(app: Any, test_client: Any) -> None:
    with tme.Client(http_client=test_client) as driver:
        workflow_id, _ = _chain(driver, "async")
    transport = httpx.ASGITransport(app=app)
    headers = dict(test_client.headers)
    http = httpx.AsyncClient(transport=transport, base_url="http://tme.test", headers=headers)
    async with http, tme.AsyncClient(http_client=http) as client:
        done = await client.runs.cancel_workflow(workflow_id, force=True)
    assert [r.state for r in done.runs] == ["canceled"]


def test_cli_cancels_a_workflow_run(live_url: str) -> None:
    runner = CliRunner()
    with tme.Client(live_url) as client:
        workflow_id, alarm = _chain(client, "cli")
        args = ["run", "cancel", "--workflow", workflow_id, "--url", live_url]
        result = runner.invoke(cli_app, args)
        assert result.exit_code == 0, result.output
        out = " ".join(result.stdout.split())
        assert f"cancel: workflow run {workflow_id} canceled by admin: 1 run(s) canceled" in out
        assert "its steps not started yet are skipped" in out
        _skipped_alarm(client, workflow_id, alarm)
        wait_until(
            lambda: all(r.settled for r in client.runs.workflow(workflow_id)),
            what="the workflow run over",
        )
    again = runner.invoke(cli_app, args)
    assert "nothing was running" in one_line_error(again)
    unknown = runner.invoke(cli_app, ["run", "cancel", "--workflow", "nope", "--url", live_url])
    assert one_line_error(unknown) == "error: workflow run nope does not exist [not_found]"


def test_cli_json_is_the_answer(live_url: str) -> None:
    with tme.Client(live_url) as client:
        workflow_id, _ = _chain(client, "json")
    args = ["run", "cancel", "--workflow", workflow_id, "--json", "--url", live_url]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["workflow_id"] == workflow_id and body["runs"][0]["state"] == "canceled"
