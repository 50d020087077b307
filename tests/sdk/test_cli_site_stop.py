"""`tme site stop`: every stop named (an offline agent said at once) and the devices left
alone, then each device's first writes as its run says them, led by the device, then each
run's end; exit 1 when a safe value was not written or a stop did not succeed, while the
other stops are still followed; --no-wait ends once every device's first writes are said."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from tme.cli import device_stop
from tme.cli.main import app
from tme.cli.output import console
from tme.client.sync import Fleet, Runs
from tme.fleet_schemas import NotStoppedDevice, SiteStopped, StoppedDevice
from tme.schemas import RunDetail

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
PUMP, BELT = "run-pump1", "run-conveyor1"
AT = "2026-12-07T08:00:00.052000+00:00"
PUMP_SAFE = {"run": False, "speed_setpoint": 0}
BELT_SAFE = {"enable": False, "speed_setpoint": 0}
STOP = ["site", "stop", "plant-1", "--reason", "flood", "--url", "http://127.0.0.1:9"]


def _first(written: dict[str, Any], not_written: dict[str, str] | None = None) -> dict:
    return {"at": AT, "written": written, "not_written": not_written or {}, "hold_s": 0}


def _run(run_id: str, state: str, result: dict | None = None, reason: str = "") -> RunDetail:
    return RunDetail(
        id=run_id, task_id=1, state=state, result=result, reason=reason,
        created_at=NOW, updated_at=NOW,
    )  # fmt: skip


ANSWER = SiteStopped(
    site="plant-1",
    stopped=[
        StoppedDevice(
            agent="skid-a",
            device="pump1",
            agent_online=True,
            task_id=41,
            run_id=PUMP,
            canceled_runs=["r-9"],
        ),
        StoppedDevice(
            agent="line-b",
            device="conveyor1",
            agent_online=False,
            task_id=42,
            run_id=BELT,
            canceled_runs=[],
        ),
    ],
    not_stopped=[NotStoppedDevice(agent="lab-c", device="meter1", why="no point with a safe")],
)


class _Site:
    """The API as the stops' runs go: each run's states one after the other at each read
    of it (the last one again)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runs: dict[str, list[RunDetail]]):
        self.runs = runs
        self.reads: list[str] = []
        self.out = io.StringIO()
        monkeypatch.setattr(Fleet, "stop_site", lambda *_, **__: ANSWER)
        monkeypatch.setattr(Runs, "get", lambda _self, run_id: self._next(run_id))
        monkeypatch.setattr(console, "_file", self.out)  # restored to None: sys.stdout
        monkeypatch.setattr(console, "width", 300)
        monkeypatch.setattr(device_stop, "POLL_S", 0.001)

    def _next(self, run_id: str) -> RunDetail:
        self.reads.append(run_id)
        states = self.runs[run_id]
        return states.pop(0) if len(states) > 1 else states[0]

    def lines(self) -> list[str]:
        return self.out.getvalue().splitlines()


def _done(run_id: str, written: dict[str, Any]) -> RunDetail:
    return _run(run_id, "succeeded", {"written": written, "first_pass": _first(written)})


def test_each_devices_stop_is_followed_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    site = _Site(
        monkeypatch,
        {
            PUMP: [_run(PUMP, "running"), _run(PUMP, "running", {"first_pass": _first(PUMP_SAFE)}),
                   _done(PUMP, PUMP_SAFE)],
            BELT: [_run(BELT, "queued"), _run(BELT, "queued"), _run(BELT, "queued"),
                   _done(BELT, BELT_SAFE)],
        },
    )  # fmt: skip
    result = CliRunner().invoke(app, STOP)
    assert result.exit_code == 0, result.output
    lines = site.lines()
    assert lines[:4] == [
        "stop of site plant-1: 2 device(s), 1 left alone",
        f"  skid-a/pump1: task 41, run {PUMP}; 1 unfinished run(s) of it canceled",
        f"  line-b/conveyor1: task 42, run {BELT}; 0 unfinished run(s) of it canceled; its agent"
        " line-b is OFFLINE: the stop waits for it at most 60 s, then fails as not delivered",
        "  left alone: lab-c/meter1: no point with a safe",
    ]
    assert lines[4:] == [
        "skid-a/pump1: safe values written at 08:00:00.052 UTC: run = false, speed_setpoint = 0",
        "skid-a/pump1: the agent: succeeded: wrote run = false, speed_setpoint = 0 (its safe"
        " values)",
        "line-b/conveyor1: safe values written at 08:00:00.052 UTC: enable = false,"
        " speed_setpoint = 0",
        "line-b/conveyor1: the agent: succeeded: wrote enable = false, speed_setpoint = 0 (its"
        " safe values)",
    ]
    assert site.reads.count(PUMP) == 3  # not read again once it ended


def test_a_safe_value_not_written_exits_1_and_the_others_are_still_followed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    failed = _first({"run": False}, {"speed_setpoint": "no answer within 5.0 s"})
    site = _Site(
        monkeypatch,
        {
            PUMP: [_run(PUMP, "failed", {"first_pass": failed}, reason="stop incomplete")],
            BELT: [_run(BELT, "running"), _done(BELT, BELT_SAFE)],
        },
    )
    result = CliRunner().invoke(app, STOP)
    assert result.exit_code == 1, result.output
    said = "\n".join(site.lines())
    assert (
        "skid-a/pump1: SAFE VALUES NOT WRITTEN at 08:00:00.052 UTC: speed_setpoint: no answer"
        " within 5.0 s (written: run = false)"
    ) in said
    assert "skid-a/pump1: the agent: failed: stop incomplete" in said
    assert "line-b/conveyor1: the agent: succeeded" in said


def test_a_stop_never_delivered_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    site = _Site(
        monkeypatch,
        {
            PUMP: [_done(PUMP, PUMP_SAFE)],
            BELT: [_run(BELT, "expired", reason="not delivered within 60 s")],
        },
    )
    result = CliRunner().invoke(app, STOP)
    assert result.exit_code == 1, result.output
    assert "line-b/conveyor1: the agent: expired: not delivered within 60 s" in site.lines()


def test_no_wait_ends_once_every_device_said_its_first_writes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holding = {"first_pass": {**_first(PUMP_SAFE), "hold_s": 29.9}}
    site = _Site(
        monkeypatch,
        {
            PUMP: [_run(PUMP, "running", holding)],
            BELT: [_run(BELT, "queued"), _run(BELT, "running", {"first_pass": _first(BELT_SAFE)})],
        },
    )
    result = CliRunner().invoke(app, [*STOP, "--no-wait", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert [d["device"] for d in body["stopped"]] == ["pump1", "conveyor1"]
    assert {k: r["state"] for k, r in body["runs"].items()} == {
        "skid-a/pump1": "running",
        "line-b/conveyor1": "running",
    }
    assert site.lines() == []  # --json: the answer only


def test_the_timeout_names_the_stops_still_going(monkeypatch: pytest.MonkeyPatch) -> None:
    _Site(monkeypatch, {PUMP: [_done(PUMP, PUMP_SAFE)], BELT: [_run(BELT, "queued")]})
    result = CliRunner().invoke(app, [*STOP, "--timeout", "0.05"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.stderr.split())
    assert f"stops still going at the --timeout: line-b/conveyor1 (run {BELT})" in said
    assert "skid-a/pump1" not in said


def test_a_bad_timeout_stops_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []
    monkeypatch.setattr(Fleet, "stop_site", lambda *a, **k: asked.append(a))
    result = CliRunner().invoke(app, [*STOP, "--timeout", "nan"])
    assert result.exit_code == 2, result.output
    assert "timeout: must be 0 or more seconds" in result.stderr and asked == []


def test_a_large_sites_stops_are_read_less_often() -> None:
    """Up to ten stops going are read every 0.2 s; a hundred, every 2 s (a round of reads
    of each), not a hundred reads every 0.2 s while the controller sends the stops."""
    assert device_stop._round_pause(1) == device_stop._round_pause(10) == device_stop.POLL_S
    assert device_stop._round_pause(100) == pytest.approx(10 * device_stop.POLL_S)
