"""What `tme run cancel` says: a run in an agent's hands is not canceled by the request
itself, so the line says a stop was asked for, not only the state it is still in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from tme.cli.main import app
from tme.client.sync import Runs, Tasks, Triggers
from tme.schemas import RunDetail, RunEventPublic, RunPublic, TriggerFired

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


def _workflow(settled: bool) -> list[RunPublic]:
    first = dict(task_id=1, created_at=NOW, updated_at=NOW, workflow_id="w-1", settled=True)
    return [
        RunPublic(id="w-1", state="failed", reason="reported fail", cause="trigger", **first),
        RunPublic(
            id="r-2", task_id=2, state="skipped", cause="dependency", created_at=NOW,
            updated_at=NOW, workflow_id="w-1", settled=True,
            reason="condition cannot hold: task 1 failed, needs success",
        ),
        RunPublic(
            id="r-3", task_id=3, state="succeeded" if settled else "pending",
            cause="dependency", created_at=NOW, updated_at=NOW, workflow_id="w-1",
            settled=settled, reason="dependencies settled",
        ),
    ]  # fmt: skip


@pytest.mark.parametrize("settled", [False, True])
def test_run_workflow_lists_each_step_with_its_state_and_reason(
    monkeypatch: pytest.MonkeyPatch, settled: bool
) -> None:
    monkeypatch.setattr(Runs, "workflow", lambda self, workflow_id: _workflow(settled))
    result = CliRunner().invoke(app, ["run", "workflow", "w-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "task 1 run w-1 failed trigger reported fail" in out
    assert "task 2 run r-2 skipped dependency condition cannot hold: task 1 failed" in out
    state = "succeeded" if settled else "pending"
    assert f"task 3 run r-3 {state} dependency dependencies settled" in out
    assert ("every run is settled" in out) is settled
    assert ("1 of 3 run(s) not settled yet" in out) is not settled


def test_run_workflow_json_is_the_list_of_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Runs, "workflow", lambda self, workflow_id: _workflow(True))
    result = CliRunner().invoke(
        app, ["run", "workflow", "w-1", "--json", "--url", "http://127.0.0.1:9"]
    )
    assert result.exit_code == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["task_id"], r["state"], r["cause"]) for r in runs] == [
        (1, "failed", "trigger"), (2, "skipped", "dependency"), (3, "succeeded", "dependency")
    ]  # fmt: skip


@pytest.mark.parametrize("as_json", [False, True])
def test_a_trigger_nothing_is_bound_to_is_an_error(
    monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    # `tme trigger fire bach` (for batch) printed an empty table and exited 0.
    monkeypatch.setattr(Triggers, "fire", lambda self, name: TriggerFired(trigger=name, runs=[]))
    args = ["trigger", "fire", "bach", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args + (["--json"] if as_json else []))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no task is bound to trigger 'bach'")
    assert result.stdout == ""


def test_run_workflow_wait_polls_until_every_run_is_settled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `tme task wait` on the alarm right after a trigger may see its run of the last
    # workflow run; waiting on the workflow run sees this one's.
    answers = iter([_workflow(False), _workflow(False), _workflow(True)])
    monkeypatch.setattr(Runs, "workflow", lambda self, workflow_id: next(answers))
    monkeypatch.setattr("tme.cli.run_cmd.WORKFLOW_POLL_S", 0.01)
    args = ["run", "workflow", "w-1", "--wait", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.stderr  # task 1 failed in it
    out = " ".join(result.stdout.split())
    assert "task 3 run r-3 succeeded" in out and "every run is settled" in out
    assert next(answers, None) is None  # asked until it was over, not after


def test_run_workflow_wait_gives_up_at_its_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Runs, "workflow", lambda self, workflow_id: _workflow(False))
    args = ["run", "workflow", "w-1", "--wait", "--timeout", "0.05", "--url", "http://x:9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: workflow run w-1: 1 of 3 run(s) not settled after 0.05s"
    )


def test_run_workflow_wait_judges_a_retried_task_by_its_last_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Its first attempt failed, a retry by hand succeeded: the workflow run did not fail.
    first, skipped, _ = _workflow(True)
    retry = first.model_copy(update={"id": "r-4", "state": "succeeded", "attempt": 2})
    again = skipped.model_copy(update={"id": "r-5", "state": "succeeded"})
    monkeypatch.setattr(Runs, "workflow", lambda self, workflow_id: [first, skipped, retry, again])
    args = ["run", "workflow", "w-1", "--wait", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.stdout
    assert "task 1 run r-4 succeeded (attempt 2)" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    ("command", "patch", "said"),
    [
        (["task", "run", "7"], (Tasks, "run"), "run now refused"),
        (["run", "retry", "r-0"], (Runs, "retry"), "retry refused"),
    ],
)
def test_a_start_by_hand_its_overlap_policy_refused_exits_1(
    monkeypatch: pytest.MonkeyPatch, command: list[str], patch: tuple[type, str], said: str
) -> None:
    # "started: run ... is skipped" and exit 0: a script went on as if the run had begun.
    reason = "run now: skipped, run r-0 is still pending (overlap skip)"
    run = RunPublic(id="r-1", task_id=7, state="skipped", reason=reason, created_at=NOW,
                    updated_at=NOW)  # fmt: skip
    monkeypatch.setattr(*patch, lambda self, ident: run)
    result = CliRunner().invoke(app, [*command, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert " ".join(result.stdout.split()) == f"{said}: run r-1 of task 7 is skipped ({reason})"
    started = run.model_copy(update={"state": "pending", "reason": "run now"})
    monkeypatch.setattr(*patch, lambda self, ident: started)
    assert CliRunner().invoke(app, [*command, "--url", "http://127.0.0.1:9"]).exit_code == 0


@pytest.mark.parametrize("as_json", [False, True])
def test_a_trigger_whose_every_run_was_refused_exits_1(
    monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    # Every task bound to it paused (or refused by its overlap policy): the table of
    # skipped runs and exit 0, as if the trigger had started something.
    reason = "trigger batch: skipped, task paused"
    skipped = RunPublic(id="r-1", task_id=7, state="skipped", reason=reason, created_at=NOW,
                        updated_at=NOW)  # fmt: skip
    fired = TriggerFired(trigger="batch", runs=[skipped])
    monkeypatch.setattr(Triggers, "fire", lambda self, name: fired)
    args = ["trigger", "fire", "batch", "--url", "http://127.0.0.1:9"]
    result = CliRunner().invoke(app, args + (["--json"] if as_json else []))
    assert result.exit_code == 1
    assert result.stderr == (
        "refused: no task bound to trigger 'batch' was started (each run is skipped,"
        " its reason says why)\n"
    )
    assert ("run(s)" in result.stdout) is not as_json
    started = skipped.model_copy(update={"state": "pending", "task_id": 8})
    both = TriggerFired(trigger="batch", runs=[skipped, started])  # one started: done
    monkeypatch.setattr(Triggers, "fire", lambda self, name: both)
    assert CliRunner().invoke(app, args).exit_code == 0


def test_run_show_prints_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only --json showed what the machine answered (a read's values, a stop's writes)."""
    result = {"values": {"level": {"value": 41.5, "unit": "%"}}}
    detail = RunDetail(
        id="r-1", task_id=7, state="succeeded", created_at=NOW, updated_at=NOW, result=result
    )
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    shown = CliRunner().invoke(app, ["run", "show", "r-1", "--url", "http://127.0.0.1:9"])
    assert shown.exit_code == 0, shown.stderr
    text = shown.stdout[shown.stdout.index("result:") :]
    assert json.loads(text.removeprefix("result:")) == result


def test_run_show_says_how_long_it_took_against_its_usual(monkeypatch: pytest.MonkeyPatch) -> None:
    detail = RunDetail(
        id="r-1", task_id=7, state="succeeded", created_at=NOW, updated_at=NOW,
        took_s=12.0, usual_s=3.0, usual_runs=20, slow=True,
    )  # fmt: skip
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    result = CliRunner().invoke(app, ["run", "show", "r-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    out = " ".join(result.stdout.split())
    assert "took 12.0 s; usual 3.0 s (median of the last 20 succeeded runs), 4.0x: slow" in out


def test_run_show_gives_hop_times_to_the_millisecond_in_80_columns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import timedelta

    from tme.cli.output import console

    events = [
        RunEventPublic(at=NOW, from_state=None, to_state="pending", reason="run now"),
        RunEventPublic(
            at=NOW + timedelta(milliseconds=9.4), from_state="pending", to_state="running"
        ),
        RunEventPublic(  # the next day: its date is said
            at=NOW + timedelta(days=1, seconds=3), from_state="running", to_state="succeeded"
        ),
    ]
    detail = RunDetail(
        id="r-1", task_id=7, state="succeeded", reason="succeeded", created_at=NOW,
        updated_at=NOW, events=events,
    )  # fmt: skip
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["run", "show", "r-1", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "run: run r-1 of task 7 is succeeded"  # not "succeeded (succeeded)"
    assert "transitions (UTC, 2026-12-07)" in result.stdout
    rows = [line.split("│")[1:-1] for line in lines if line.count("│") == 6]
    assert [[cell.strip() for cell in row[:3]] for row in rows] == [
        ["00:00:00.000", "", "pending"],
        ["00:00:00.009", "pending", "running"],
        ["2026-12-08 00:00:03.000", "running", "succeeded"],
    ]
    assert rows[0][4].strip() == "run now" and rows[1][4].strip() == ""


def _shown(monkeypatch: pytest.MonkeyPatch, state: str, result: dict) -> str:
    detail = RunDetail(
        id="r-1", task_id=7, state=state, created_at=NOW, updated_at=NOW, result=result
    )
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    shown = CliRunner().invoke(app, ["run", "show", "r-1", "--url", "http://127.0.0.1:9"])
    assert shown.exit_code == 0, shown.stderr
    return " ".join(shown.stdout.split())


FIRST_PASS = {
    "at": "2026-12-07T06:00:01.052000+00:00",
    "written": {"run": False, "speed_setpoint": 0},
    "not_written": {},
    "hold_s": 2.0,
}


def test_run_show_says_a_stops_first_writes_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tme device stop` leaves before the hold ends and points to `tme run show`: it
    says the first writes as the stop command did, and the hold while the run goes on."""
    out = _shown(monkeypatch, "running", {"first_pass": FIRST_PASS})
    assert "safe values written at 06:00:01.052 UTC: run = false, speed_setpoint = 0" in out
    assert "holding them 2.0 s, until 06:00:03.052 UTC" in out
    ended = _shown(monkeypatch, "succeeded", {"stopped": "pump1", "first_pass": FIRST_PASS})
    assert "safe values written at 06:00:01.052 UTC" in ended
    assert "holding them" not in ended
    failed = {"first_pass": {**FIRST_PASS, "not_written": {"run": "no answer"}}}
    out = _shown(monkeypatch, "failed", failed)
    assert "SAFE VALUES NOT WRITTEN at 06:00:01.052 UTC: run: no answer" in out
