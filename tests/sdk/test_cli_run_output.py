"""What `tme run cancel` says: a run in an agent's hands is not canceled by the request
itself, so the line says a stop was asked for, not only the state it is still in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tme.cli.main import app
from tme.client.sync import Runs
from tme.schemas import RunDetail, RunEventPublic, RunPublic

NOW = datetime(2026, 12, 7, tzinfo=UTC)


def _cancel_answer(monkeypatch: pytest.MonkeyPatch, state: str, reason: str) -> str:
    run = RunPublic(id="r-1", task_id=7, state=state, reason=reason, created_at=NOW, updated_at=NOW)
    monkeypatch.setattr(Runs, "cancel", lambda self, run_id, force=False: run)
    result = CliRunner().invoke(app, ["run", "cancel", "r-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    return " ".join(result.stdout.split())  # as read, whatever the terminal's width


def test_a_running_run_is_said_to_be_asked_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _cancel_answer(monkeypatch, "running", "started")
    assert "asked the agent to stop run r-1 of task 7" in out
    assert "running (started) until the agent answers" in out
    assert "--force" in out


def test_a_run_canceled_at_once_is_said_to_be_canceled(monkeypatch: pytest.MonkeyPatch) -> None:
    out = _cancel_answer(monkeypatch, "canceled", "canceled before dispatch")
    assert out.strip() == "cancel: run r-1 of task 7 is canceled (canceled before dispatch)"


def test_run_show_marks_a_late_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    events = [
        RunEventPublic(at=NOW, from_state=None, to_state="pending"),
        RunEventPublic(at=NOW, from_state="pending", to_state="succeeded"),
        RunEventPublic(at=NOW, from_state="succeeded", to_state="dispatched", reason="confirmed"),
    ]
    detail = RunDetail(
        id="r-1", task_id=7, state="succeeded", created_at=NOW, updated_at=NOW, events=events
    )
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    result = CliRunner().invoke(app, ["run", "show", "r-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "dispatched (late)" in out and out.count("(late)") == 2  # the row and the legend
    assert "it changed no state" in out
