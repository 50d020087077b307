"""Timeouts, retries and cancel over the real path, against slow simulated devices."""

from __future__ import annotations

import pytest
from waiting import wait_until

from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

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
