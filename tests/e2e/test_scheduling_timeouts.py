"""Timeouts, retries and cancel over the real path, against slow simulated devices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ports import free_port
from waiting import wait_until

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config
from tme.agents.runner import AgentThread
from tme.stack import LocalStack, agent_layout

pytestmark = pytest.mark.external_service

PUMP_UNIT, SPEED_SETPOINT = 1, 0  # configs/profiles/pump.yaml
TANK_UNIT = 2  # configs/profiles/tank.yaml


def _target(stack: LocalStack, agent: str, device: str | None = None) -> dict[str, str]:
    target = {"site": stack.config.site, "agent": agent}
    if device:
        target["device"] = device
    return target


def _runs(client, task_id: int) -> list:  # type: ignore[no-untyped-def]
    return list(client.tasks.runs(task_id))


def test_agent_stops_a_slow_read_at_its_timeout_and_it_is_retried(real_stack, client_of) -> None:
    client = client_of(real_stack)
    real_stack.plant.inject_fault(TANK_UNIT, delay_s=3.0)
    try:
        task = client.tasks.create(
            name="slow read",
            op="modbus.read",
            target=_target(real_stack, "skid-a", "tank1"),
            params={"point": "level"},
            timeout_s=0.5,
            retries={"max": 1, "backoff_s": 0.2, "jitter": 0},
        )
        wait_until(
            lambda: [r.state for r in _runs(client, task.id)] == ["timed_out", "timed_out"],
            timeout=30,
            what="both attempts to time out",
        )
    finally:
        real_stack.plant.clear_faults()
    runs = _runs(client, task.id)
    assert [r.attempt for r in runs] == [2, 1]
    detail = client.runs.get(runs[1].id)
    assert any(e.to_state == "timed_out" and e.source == "agent" for e in detail.events)


def test_queue_timeout_expires_a_run_no_agent_takes(real_stack, client_of) -> None:
    client = client_of(real_stack)
    task = client.tasks.create(
        name="nobody home", op="noop", target=_target(real_stack, "ghost"), queue_timeout_s=0.5
    )
    wait_until(lambda: client.tasks.get(task.id).status == "expired", timeout=20, what="expiry")
    # Whoever sees not_after pass first expires it: the controller's watchdog, or the
    # gateway when its first pass over the command came after not_after (a busy machine:
    # the command was never sent). Either way it expired and never ran.
    reason = _runs(client, task.id)[0].reason
    assert "queue timeout" in reason or "not delivered before not_after" in reason, reason


def test_cancel_stops_a_running_operation(real_stack, client_of) -> None:
    client = client_of(real_stack)
    task = client.tasks.create(
        name="long sleep",
        op="sleep",
        target=_target(real_stack, "skid-a"),
        params={"seconds": 60},
        timeout_s=120,
    )
    run_id = wait_until(
        lambda: (r := _runs(client, task.id)[0]).state == "running" and r.id,
        timeout=20,
        what="the sleep to run",
    )
    asked = client.runs.cancel(str(run_id))
    assert asked.state == "running"  # the agent is asked; it reports when it stopped
    wait_until(lambda: client.runs.get(str(run_id)).state == "canceled", timeout=20, what="stop")
    detail = client.runs.get(str(run_id))
    final = [e for e in detail.events if e.to_state == "canceled"]
    assert final and final[0].source == "agent" and "stopped on request" in final[0].reason


def _skid_a_on_a_dead_port(stack: LocalStack, state_dir: Path) -> None:
    """Agent skid-a again, its devices on a port nothing listens on (the plant down)."""
    stack.stop_agent("skid-a")
    cfg = stack.config
    layout = agent_layout(cfg.site, cfg.profiles_dir, free_port(), stack.instrument.url)
    data = next(d for d in layout if d["agent"] == "skid-a")
    data.update(mqtt=stack.mqtt_url, state_dir=str(state_dir))
    stack.agents["skid-a"] = AgentThread(DeviceAgent(parse_agent_config(data))).start()


def _write_speed(client, stack: LocalStack, name: str, **retries: Any):  # type: ignore[no-untyped-def]
    return client.tasks.create(
        name=name,
        op="modbus.write",
        target=_target(stack, "skid-a", "pump1"),
        params={"point": "speed_setpoint", "value": 100},
        retries={"max": 2, "backoff_s": 0.2, "jitter": 0, **retries},
    )


def test_a_write_whose_device_refuses_the_connection_is_retried(
    real_stack, client_of, tmp_path: Path
) -> None:
    """No frame left the agent, which says so (not started): the controller retries even
    a write. It was run once, not retried, with `cannot connect` and no word why."""
    _skid_a_on_a_dead_port(real_stack, tmp_path / "skid-a")
    client = client_of(real_stack)
    task = _write_speed(client, real_stack, "write, plant down")
    wait_until(
        lambda: [r.state for r in _runs(client, task.id)] == ["failed"] * 3,
        timeout=60,
        what="the write and its two retries to fail",
    )
    runs = _runs(client, task.id)
    assert [r.attempt for r in runs] == [3, 2, 1]
    for run in runs:
        assert "cannot connect" in run.reason and "nothing was sent to the device" in run.reason
    wait_until(
        lambda: _runs(client, task.id)[0].reason.endswith("not retried: retries exhausted (2)"),
        what="the last attempt to say why none follows",
    )
    assert real_stack.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT) == []


def test_a_write_that_may_have_reached_the_device_is_not_retried_and_says_why(
    real_stack, client_of
) -> None:
    """The plant answers too late (the driver waits 2 s): the frame went out, and the
    device may act on it, so the write is not retried, whatever `retries` says."""
    real_stack.plant.inject_fault(PUMP_UNIT, table="holding_register", delay_s=5.0)
    try:
        client = client_of(real_stack)
        task = _write_speed(client, real_stack, "write, slow plant")
        wait_until(
            lambda: "not retried" in _runs(client, task.id)[0].reason,
            timeout=30,
            what="the write to fail and say why it is not retried",
        )
    finally:
        real_stack.plant.clear_faults()
    (run,) = _runs(client, task.id)
    assert run.state == "failed" and "nothing was sent" not in run.reason
    assert run.reason.endswith(
        "not retried: a write is retried only when the agent reports it never started, "
        "and this one may have reached the device"
    )
    assert real_stack.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT) == [(100,)]


def test_a_repeatable_write_that_may_have_reached_the_device_is_retried(
    real_stack, client_of
) -> None:
    """An absolute setpoint written twice does no harm: with retries.repeatable the
    write whose answer came too late is tried again, each attempt reaching the plant."""
    real_stack.plant.inject_fault(PUMP_UNIT, table="holding_register", delay_s=5.0)
    try:
        client = client_of(real_stack)
        task = _write_speed(client, real_stack, "repeatable write", repeatable=True)
        wait_until(
            lambda: [r.state for r in _runs(client, task.id)] == ["failed"] * 3,
            timeout=60,
            what="the write and its two retries to fail",
        )
    finally:
        real_stack.plant.clear_faults()
    assert [r.attempt for r in _runs(client, task.id)] == [3, 2, 1]
    assert real_stack.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT) == [(100,)] * 3
