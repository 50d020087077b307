"""A pump's anti-short-cycle limit (min_interval_s on its `run` coil) over the real
path: RabbitMQ, Mosquitto, the gateway, the agent and the simulated plant.

The machine is checked by reading the simulator directly, never through TME.
"""

from __future__ import annotations

import pytest
from waiting import wait_until

from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

PUMP_UNIT, RUN = 1, 0  # configs/profiles/pump.yaml: the run coil
START, STOP = {"point": "run", "value": True}, {"point": "run", "value": False}


def _write(client, stack: LocalStack, params: dict[str, object]):  # type: ignore[no-untyped-def]
    target = {"site": stack.config.site, "agent": "skid-a", "device": "pump1"}
    task = client.tasks.create(name="pump run", op="modbus.write", target=target, params=params)
    done = client.tasks.wait(task.id, timeout=30)
    return done, client.runs.get(done.latest_run_id)


def test_a_second_start_within_the_interval_is_rejected_after_an_agent_restart_too(
    paced_stack, client_of
) -> None:
    client = client_of(paced_stack)
    site, plant = paced_stack.config.site, paced_stack.plant

    def run_point():  # pump1's run, as the API shows it
        pump1 = next((d for d in client.fleet.devices(site=site) if d.name == "pump1"), None)
        return next((p for p in pump1.points if p.name == "run"), None) if pump1 else None

    wait_until(lambda: run_point() is not None, timeout=15, what="pump1 published")
    assert run_point().min_interval_s == 60
    assert "min interval 60 s" in run_point().limits()

    started, run = _write(client, paced_stack, START)
    assert started.status == "succeeded", run.reason
    assert plant.read_bit(PUMP_UNIT, RUN) is True
    stopped, run = _write(client, paced_stack, STOP)  # its safe value: never held back
    assert stopped.status == "succeeded", run.reason
    assert plant.read_bit(PUMP_UNIT, RUN) is False

    paced_stack.stop_agent("skid-a")  # the agent restarts a moment after the stop
    paced_stack.start_agent("skid-a")
    writes_before = plant.request_count(PUMP_UNIT, writes_only=True)
    again, run = _write(client, paced_stack, START)
    assert again.status == "rejected", run.reason
    assert "point 'run' was last changed" in run.reason
    assert "its min_interval_s is 60 (next change allowed in" in run.reason
    assert run.reason.endswith("; nothing was written")
    assert plant.read_bit(PUMP_UNIT, RUN) is False
    assert plant.request_count(PUMP_UNIT, writes_only=True) == writes_before
