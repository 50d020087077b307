"""CLI tables in an 80-column terminal (a pipe, a small window) hide nothing: an id a
person copies into the next command stays whole, and a long value wraps instead of
being cut short with "…"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli.main import app
from tme.cli.output import console
from tme.client.sync import Runs, Tasks
from tme.schemas import RunDetail, RunLogLine, RunPublic, TaskPublic

NOW = datetime(2026, 12, 7, 3, 17, tzinfo=UTC)
RUN_ID = "0bca7c33-c016-4fbc-b8c0-246757abf1b4"
REASON = "missed schedule slot 2026-12-07T03:17:00+00:00: 73 s late, beyond the misfire grace"


def _runs(self: Any, task_id: int, **_: Any) -> Iterator[RunPublic]:
    yield RunPublic(
        id=RUN_ID, task_id=task_id, state="skipped", reason=REASON, created_at=NOW, updated_at=NOW
    )


def test_task_show_keeps_the_run_id_whole_at_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    task = TaskPublic(id=7, name="t", op="noop", status="idle", created_at=NOW, updated_at=NOW)
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: task)
    monkeypatch.setattr(Tasks, "runs", _runs)
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["task", "show", "7", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    assert "…" not in result.stdout
    assert any(RUN_ID in line for line in result.stdout.splitlines())  # copyable as is
    runs = result.stdout.split("Latest runs (times in UTC)", 1)[1].splitlines()[1:]
    assert runs[0] == f"{RUN_ID}  skipped  2026-12-07 03:17:00"
    assert all(len(line) <= 80 for line in runs)
    assert " ".join(" ".join(runs[1:]).split()) == REASON  # wrapped below it, all kept


def _berlin_task() -> TaskPublic:
    return TaskPublic(
        id=7, name="weekday pump", op="noop", status="idle", created_at=NOW, updated_at=NOW,
        schedule={"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"},
        next_fire_times=[datetime(2026, 12, day, 5, tzinfo=UTC) for day in (7, 8)],
    )  # fmt: skip


def test_show_and_resume_give_next_fire_times_in_the_schedules_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 05:00Z for a 06:00 Berlin cron read as a wrong schedule; the dashboard shows 06:00+01:00.
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: _berlin_task())
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter(()))
    monkeypatch.setattr(Tasks, "resume", lambda self, task_id: _berlin_task())
    monkeypatch.setattr(console, "width", 200)
    expected = "2026-12-07T06:00:00+01:00, 2026-12-08T06:00:00+01:00 (Europe/Berlin)"
    for command in (["task", "show", "7"], ["task", "resume", "7"]):
        result = CliRunner().invoke(app, [*command, "--url", "http://127.0.0.1:9"])
        assert result.exit_code == 0, result.stderr
        assert expected in result.stdout, result.stdout
    shown = CliRunner().invoke(app, ["task", "show", "7", "--json", "--url", "http://x:9"])
    assert json.loads(shown.stdout)["task"]["next_fire_times"][0] == "2026-12-07T05:00:00Z"


def test_task_show_asks_for_more_runs_than_a_page_in_pages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []

    def runs(self: Any, task_id: int, page_size: int = 100) -> Iterator[RunPublic]:
        asked.append(page_size)
        return _runs(self, task_id)

    monkeypatch.setattr(Tasks, "get", lambda self, task_id: _berlin_task())
    monkeypatch.setattr(Tasks, "runs", runs)
    result = CliRunner().invoke(app, ["task", "show", "7", "--runs", "1500", "--url", "x://"])
    assert result.exit_code == 0, result.stderr
    assert asked == [1000]  # the SDK refuses a page over 1000 (the server's bound)


def test_task_show_runs_0_shows_no_runs_and_a_negative_count_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # --runs 0 said "No runs yet" of a task with runs, and so did --runs -1, exit 0.
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: _berlin_task())
    monkeypatch.setattr(Tasks, "runs", _runs)
    none = CliRunner().invoke(app, ["task", "show", "7", "--runs", "0", "--url", "x://"])
    assert none.exit_code == 0, none.stderr
    assert "Task 7" in none.stdout and "runs" not in none.stdout.split("updated_at")[-1]
    refused = CliRunner().invoke(app, ["task", "show", "7", "--runs", "-1", "--url", "x://"])
    assert refused.exit_code == 2, refused.output
    assert "'--runs'" in refused.stderr and "greater than or equal to 0" in refused.stderr
    assert refused.stdout == ""


def test_task_list_says_which_tasks_are_paused_and_when_the_others_fire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A paused task's schedule, trigger and dependencies start nothing; the list gave no sign.
    paused = _berlin_task().model_copy(update={"paused": True, "next_fire_times": []})
    active = _berlin_task().model_copy(update={"id": 8})
    monkeypatch.setattr(Tasks, "list", lambda self, *a, **k: iter([paused, active]))
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, ["task", "list", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "idle (paused)" in rows["7"] and "paused" not in rows["8"]
    # ...and when an active one fires next, in its schedule's zone
    assert "next 2026-12-07T06:00:00+01:00 (Europe/Berlin)" in rows["8"]
    assert "next" not in rows["7"]


def test_resume_says_a_one_off_whose_time_passed_will_not_fire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "task 7 active" alone: the operator waited for a one-off that was never to come.
    task = TaskPublic(
        id=7, name="t", op="noop", status="idle", created_at=NOW, updated_at=NOW,
        schedule={"at": "2026-12-07T03:00:00+00:00"}, next_fire_times=[],
    )  # fmt: skip
    monkeypatch.setattr(Tasks, "resume", lambda self, task_id: task)
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, ["task", "resume", "7", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == (
        "task 7 active; its one-off time 2026-12-07T03:00:00+00:00 has passed and it will not"
        " fire (`tme task run 7` starts it now)"
    )


MARKUP_NAME = "mk [/] x"  # a closing tag with nothing to close: rich raised MarkupError
LINK_NAME = "[link=https://evil.example]click me[/link]"  # rich printed a hidden link
ESCAPES = "clear\x1b[2J\x1b]0;title\x07\rFAKE\u202eevil"  # the terminal obeyed them


def _named(task_id: int, name: str, description: str = "") -> TaskPublic:
    return TaskPublic(
        id=task_id, name=name, description=description, op="external", status="idle",
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


def test_text_from_the_server_is_printed_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """What anyone who may write a task (or an agent, or a command's output) put in a
    name, a reason or a log line is shown as it reads: never read as rich markup, and
    never a control sequence sent to the terminal of whoever lists it."""
    tasks = [_named(1, MARKUP_NAME), _named(2, LINK_NAME), _named(3, ESCAPES, ESCAPES)]
    monkeypatch.setattr(Tasks, "list", lambda self, *_, **__: iter(tasks))
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: tasks[2])
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter(()))
    detail = RunDetail(
        id=RUN_ID, task_id=3, state="failed", reason=ESCAPES, created_at=NOW, updated_at=NOW,
        log=[RunLogLine(at=NOW, line=f"out {ESCAPES} [/]")],
    )  # fmt: skip
    monkeypatch.setattr(Runs, "get", lambda self, run_id: detail)
    monkeypatch.setattr(console, "width", 200)
    runner = CliRunner()
    url = ["--url", "http://127.0.0.1:9"]
    listed = runner.invoke(app, ["task", "list", *url])
    assert listed.exit_code == 0, listed.output
    assert MARKUP_NAME in listed.stdout and LINK_NAME in listed.stdout
    shown = runner.invoke(app, ["task", "show", "3", *url])
    run = runner.invoke(app, ["run", "show", RUN_ID, *url])
    for result in (listed, shown, run):
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "\u202e" not in result.stdout
        assert "\r" not in result.stdout and "\x07" not in result.stdout
        assert r"clear\x1b[2J\x1b]0;title\x07\x0dFAKE\u202eevil" in result.stdout
    assert r"out clear\x1b[2J" in run.stdout and "[/]" in run.stdout


def test_a_task_name_with_brackets_is_shown_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich read a cell as markup: "[urgent] check pump" lost "[urgent]", and a name with
    # a closing tag ("fix [/x] valve") made `tme task list` and `show` fail with a traceback.
    names = ["[urgent] check pump", "fix [/x] valve", "[red]hot[/red]"]
    tasks = [
        TaskPublic(id=i, name=name, op="noop", status="idle", created_at=NOW, updated_at=NOW)
        for i, name in enumerate(names, start=1)
    ]
    monkeypatch.setattr(Tasks, "list", lambda self, *_, **__: iter(tasks))
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: tasks[task_id - 1])
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter(()))
    monkeypatch.setattr(console, "width", 200)
    listed = CliRunner().invoke(app, ["task", "list", "--url", "http://127.0.0.1:9"])
    assert listed.exit_code == 0, listed.stderr
    for name in names:
        assert name in listed.stdout, listed.stdout
    for task in tasks:
        shown = CliRunner().invoke(app, ["task", "show", str(task.id), "--url", "http://x:9"])
        assert shown.exit_code == 0, shown.stderr
        assert task.name in shown.stdout, shown.stdout


def test_task_show_says_how_long_each_run_took(monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import timedelta

    task = TaskPublic(id=7, name="t", op="noop", status="idle", created_at=NOW, updated_at=NOW)
    retried = RunPublic(
        id=RUN_ID, task_id=7, state="failed", attempt=2, reason="modbus timeout on unit 2",
        created_at=NOW, updated_at=NOW, started_at=NOW, finished_at=NOW + timedelta(seconds=3.2),
    )  # fmt: skip
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: task)
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter([retried]))
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["task", "show", "7", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    runs = result.stdout.split("Latest runs (times in UTC)", 1)[1].splitlines()[1:]
    assert runs == [
        f"{RUN_ID}  failed (attempt 2)  2026-12-07 03:17:00",
        "    took 3.2 s; modbus timeout on unit 2",
    ]


def test_task_resources_says_who_holds_each_and_who_waits_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tme.schemas import ResourcePublic, ResourceRun

    def run(run_id: str, task_id: int, name: str, state: str, priority: int = 5) -> ResourceRun:
        return ResourceRun(
            run_id=run_id,
            task_id=task_id,
            task_name=name,
            state=state,
            created_at=NOW,
            priority=priority,
        )

    listed = [
        ResourcePublic(name="cell-a", tasks=[4], held_elsewhere=True),
        ResourcePublic(
            name="tank1",
            tasks=[3, 4, 5],
            holder=run(RUN_ID, 3, "flush", "running"),
            waiting=[run("r-4", 4, "fill", "waiting", 9), run("r-5", 5, "drain", "waiting")],
        ),
        ResourcePublic(name="tool-9", tasks=[6]),
    ]
    monkeypatch.setattr(Tasks, "resources", lambda self: listed)
    monkeypatch.setattr(console, "width", 200)
    result = CliRunner().invoke(app, ["task", "resources", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "cell-a (tasks 4): held by a run of another site",
        "tank1 (tasks 3, 4, 5): held",
        f"  by run {RUN_ID} of task 3 (flush), running",
        "  1. waiting: run r-4 of task 4 (fill), priority 9",
        "  2. waiting: run r-5 of task 5 (drain), priority 5",
        "tool-9 (tasks 6): free",
    ]


def test_task_show_keeps_a_long_reason_indented_under_its_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A run waiting for a resource names the run holding it: two lines at 80 columns,
    # the second of which began at column 0, under nothing.
    reason = f"waiting for resource tank1, held by run {RUN_ID} of task 12 (flush tank 1)"
    task = TaskPublic(id=7, name="t", op="noop", status="idle", created_at=NOW, updated_at=NOW)
    waiting = RunPublic(
        id=RUN_ID, task_id=7, state="waiting", reason=reason, created_at=NOW, updated_at=NOW
    )
    monkeypatch.setattr(Tasks, "get", lambda self, task_id: task)
    monkeypatch.setattr(Tasks, "runs", lambda self, task_id, **_: iter([waiting]))
    monkeypatch.setattr(console, "width", 80)
    result = CliRunner().invoke(app, ["task", "show", "7", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 0, result.stderr
    runs = result.stdout.split("Latest runs (times in UTC)", 1)[1].splitlines()[1:]
    assert runs[0] == f"{RUN_ID}  waiting  2026-12-07 03:17:00"
    assert len(runs) == 3 and all(line.startswith("    ") for line in runs[1:]), runs
    assert all(len(line) <= 80 and line == line.rstrip() for line in runs)
    assert " ".join(" ".join(runs[1:]).split()) == reason
