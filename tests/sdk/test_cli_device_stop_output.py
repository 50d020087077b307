"""`tme device stop|resume` print the agent's answer as it is: a reason with brackets
(the stop's reason, carried in the resume's result, or a lockout's in a refusal) is text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli.main import app
from tme.cli.output import console
from tme.client.sync import Fleet, Runs, Tasks
from tme.fleet_schemas import DeviceStopped
from tme.schemas import RunDetail, TaskPublic

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
RUN_ID = "8e088d81-ef56-4070-8f5c-e3587e64d3a3"


@pytest.mark.parametrize(
    ("state", "result", "reason", "shown"),
    [
        ("succeeded", {"resumed": "pump1", "was": {"reason": "leak [/seal]"}}, "", "[/seal]"),
        ("rejected", None, "locked out by ann: [urgent] seal", "[urgent] seal"),
    ],
)
def test_the_agents_answer_with_brackets_is_printed_as_given(
    monkeypatch: pytest.MonkeyPatch, state: str, result: Any, reason: str, shown: str
) -> None:
    # Rich read it as markup: "[/seal]" made the command fail with a traceback after the
    # device was resumed, and "[urgent]" vanished from the refusal.
    answer = DeviceStopped(task_id=34, run_id=RUN_ID, canceled_runs=[])
    task = TaskPublic(
        id=34, name="resume pump1", op="device.resume", status=state, settled=True,
        latest_run_id=RUN_ID, created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    run = RunDetail(
        id=RUN_ID, task_id=34, state=state, result=result, reason=reason,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip
    monkeypatch.setattr(Fleet, "resume", lambda self, *_, **__: answer)
    monkeypatch.setattr(Tasks, "wait", lambda self, task_id, **_: task)
    monkeypatch.setattr(Runs, "get", lambda self, run_id: run)
    monkeypatch.setattr(console, "width", 200)
    done = CliRunner().invoke(
        app, ["device", "resume", "pump1", "--reason", "ok", "--url", "http://127.0.0.1:9"]
    )
    assert done.exception is None or isinstance(done.exception, SystemExit), done.exception
    assert done.exit_code == (0 if state == "succeeded" else 1), done.output
    assert shown in done.stdout, done.stdout
