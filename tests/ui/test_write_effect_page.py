"""The run page says a write's effect (its params.expect) in one line, reached or not."""

from __future__ import annotations

from nicegui.testing import User
from test_live_pages import _latest_run, _move, _succeed, _task

TARGET = {"site": "plant-x", "agent": "skid-a", "device": "pump1"}
EXPECT = {"point": "actual_speed", "tolerance": 20, "within_s": 5}
PARAMS = {"point": "speed_setpoint", "value": 1200, "expect": EXPECT}
EFFECT = {"point": "actual_speed", "expected": 1200, "tolerance": 20.0, "unit": "rpm"}


def _write(board) -> str:  # type: ignore[no-untyped-def]
    task_id = _task(board, op="modbus.write", target=TARGET, params=PARAMS, timeout_s=10)
    return _latest_run(board, task_id)


async def test_the_run_page_says_the_effect_reached(user: User, board, sign_in) -> None:
    run_id = _write(board)
    effect = {**EFFECT, "value": 1195, "after_s": 0.84, "reached": True}
    _succeed(board, run_id, {"point": "speed_setpoint", "written": 1200, "effect": effect})
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("effect: actual_speed reached 1195 rpm after 0.84 s")
    await user.should_see("(expected 1200 ± 20 rpm)")
    await user.should_not_see("'reached'")  # not the result's raw mapping


async def test_the_run_page_says_the_effect_not_reached(user: User, board, sign_in) -> None:
    run_id = _write(board)
    effect = {**EFFECT, "value": 0, "after_s": 5.0, "reached": False}
    result = {"point": "speed_setpoint", "written": 1200, "effect": effect}
    _move(board, run_id, "queued", "dispatched", "running", "failed", result=result)
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("effect: not reached: actual_speed read 0 rpm after 5 s")
