"""`tme device stop` says the stop's first writes as soon as its run says them
(`result.first_pass`), then the hold before the agent writes them again, then the end;
a first write that failed ends it at once, non-zero; --no-wait ends it after the first
writes; Ctrl-C leaves the stop going, naming its run."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli import device_stop
from tme.cli.main import app
from tme.cli.output import console
from tme.client.sync import Fleet, Runs, Tasks
from tme.fleet_schemas import DeviceStopped
from tme.schemas import RunDetail, TaskPublic

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
RUN_ID = "8e088d81-ef56-4070-8f5c-e3587e64d3a3"
SAFE = {"run": False, "speed_setpoint": 0}
STOP = ["device", "stop", "pump1", "--reason", "leak", "--url", "http://127.0.0.1:9"]


def _first(not_written: dict[str, str] | None = None) -> dict[str, Any]:
    written = {"run": False} if not_written else SAFE
    at = "2026-12-07T08:00:00.052000+00:00"
    return {"at": at, "written": written, "not_written": not_written or {}, "hold_s": 29.9}


def _run(state: str, result: dict[str, Any] | None, reason: str = "") -> RunDetail:
    return RunDetail(
        id=RUN_ID, task_id=34, state=state, result=result, reason=reason,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


HOLDING = _run("running", {"first_pass": _first()})
DONE = _run("succeeded", {"stopped": "pump1", "written": SAFE, "first_pass": _first()})


class _Agent:
    """The API as the stop's run goes: `runs` one after the other at each read (the last
    one again), what was printed when the CLI began to wait for the run's end."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runs: list[RunDetail]) -> None:
        self.runs = runs
        self.out = io.StringIO()
        self.printed_at_wait: str | None = None
        answer = DeviceStopped(task_id=34, run_id=RUN_ID, canceled_runs=[])
        monkeypatch.setattr(Fleet, "stop", lambda *_, **__: answer)
        monkeypatch.setattr(Runs, "get", lambda _self, _id: self._next())
        monkeypatch.setattr(Tasks, "wait", self._wait)
        monkeypatch.setattr(
            console, "_file", self.out
        )  # restored to None: sys.stdout at each print
        monkeypatch.setattr(console, "width", 300)
        monkeypatch.setattr(device_stop, "POLL_S", 0.001)

    def _next(self) -> RunDetail:
        run = self.runs[0]
        if len(self.runs) > 1:
            self.runs.pop(0)
        if isinstance(run.result, dict) and run.result.get("interrupt"):
            raise KeyboardInterrupt
        return run

    def _wait(self, task_id: int, **_: Any) -> TaskPublic:
        self.printed_at_wait = self.out.getvalue()
        self.runs = [DONE]
        return TaskPublic(
            id=task_id, name="stop pump1", op="device.stop", status="succeeded",
            settled=True, latest_run_id=RUN_ID, created_at=NOW, updated_at=NOW,
        )  # fmt: skip

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


def test_the_first_writes_and_the_hold_are_said_before_the_wait_for_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = _Agent(monkeypatch, [_run("accepted", None), HOLDING])
    done = CliRunner().invoke(app, STOP)
    assert done.exit_code == 0, (done.output, agent.lines())
    assert agent.lines() == [
        f"stop of pump1: task 34, run {RUN_ID}; 0 unfinished run(s) of it canceled",
        "safe values written at 08:00:00.052 UTC: run = false, speed_setpoint = 0",
        "holding them 29.9 s, until 08:00:29.952 UTC: a write the stop cut off may land until"
        " then; its agent writes them again then",
        "the agent: succeeded: wrote run = false, speed_setpoint = 0 (its safe values)",
    ]
    assert agent.printed_at_wait is not None
    assert "holding them 29.9 s" in agent.printed_at_wait  # said, then the wait began


def test_no_wait_ends_once_the_safe_values_were_first_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = _Agent(monkeypatch, [_run("running", None), HOLDING])
    done = CliRunner().invoke(app, [*STOP, "--no-wait"])
    assert done.exit_code == 0, (done.output, agent.lines())
    assert agent.printed_at_wait is None  # it did not wait for the run's end
    assert agent.lines()[1:] == [
        "safe values written at 08:00:00.052 UTC: run = false, speed_setpoint = 0",
        "holding them 29.9 s, until 08:00:29.952 UTC: a write the stop cut off may land until"
        " then; its agent writes them again then",
        f"not waiting for that: follow the stop with `tme run show {RUN_ID}`",
    ]


@pytest.mark.parametrize("wait", ["--wait", "--no-wait"])
def test_a_safe_value_not_written_is_said_at_once_with_exit_1(
    monkeypatch: pytest.MonkeyPatch, wait: str
) -> None:
    unsafe = _first({"speed_setpoint": "no answer from unit 1 within 30 s"})
    agent = _Agent(monkeypatch, [_run("running", {"first_pass": unsafe})])
    done = CliRunner().invoke(app, [*STOP, wait])
    assert done.exit_code == 1, (done.output, agent.lines())
    assert agent.printed_at_wait is None  # said at once, not after the hold
    assert agent.lines()[1:] == [
        "SAFE VALUES NOT WRITTEN at 08:00:00.052 UTC: speed_setpoint: no answer from unit 1"
        " within 30 s (written: run = false)",
        "holding them 29.9 s, until 08:00:29.952 UTC: a write the stop cut off may land until"
        " then; its agent writes them again then",
        f"not waiting for that: follow the stop with `tme run show {RUN_ID}`",
    ]


def test_ctrl_c_leaves_the_stop_going_and_names_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = _Agent(monkeypatch, [HOLDING, _run("running", {"interrupt": True})])
    monkeypatch.setattr(Tasks, "wait", lambda *_, **__: agent._next())  # Ctrl-C in the wait
    done = CliRunner().invoke(app, STOP)
    assert done.exit_code == 130, (done.output, agent.lines())
    said = " ".join(done.stderr.split())
    assert said == (
        "interrupted: the stop of pump1 goes on at its agent; follow its run with"
        f" `tme run show {RUN_ID}`"
    )
    assert agent.lines()[1].startswith("safe values written at ")
