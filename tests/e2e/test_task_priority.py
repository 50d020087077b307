"""A task's priority over RabbitMQ, Mosquitto and the simulated plant: of two commands
waiting at the agent for the bus pump1 and tank1 share, the priority 9 one goes first,
though it came after the priority 1 one. The command holding the bus is not interrupted.

The bus is held by a read of the tank the plant answers late (a delay fault), until
both commands wait at the agent (their runs `accepted`); then the plant answers it.
Which command ran first is read at the plant, in the order its requests arrived.
"""

from __future__ import annotations

import pytest
from waiting import wait_until

from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

PUMP_UNIT, TANK_UNIT = 1, 2  # configs/profiles: pump.yaml, tank.yaml
READ_COILS, READ_HOLDING = 1, 3  # Modbus function codes: pump1's run, its speed_setpoint


def _read(client, stack: LocalStack, device: str, point: str, priority: int):  # type: ignore[no-untyped-def]
    return client.tasks.create(
        name=f"read {device} {point}",
        op="modbus.read",
        target={"site": stack.config.site, "agent": "skid-a", "device": device},
        params={"point": point},
        timeout_s=60,
        priority=priority,
    )


def test_the_higher_priority_command_goes_first_on_a_busy_bus(patient_stack, client_of) -> None:
    stack, client = patient_stack, client_of(patient_stack)
    plant = stack.plant
    wait_until(
        lambda: (
            {"pump1", "tank1"} <= {d.name for d in client.fleet.devices(site=stack.config.site)}
        ),
        timeout=15,
        what="skid-a's devices published",
    )
    plant.inject_fault(unit=TANK_UNIT, table="input_register", delay_s=60, remaining=1)
    holder = _read(client, stack, "tank1", "level", priority=0)
    wait_until(lambda: plant.held_requests == 1, timeout=15, what="the tank read held")
    held_at = len(plant.requests)

    meters = _read(client, stack, "pump1", "speed_setpoint", priority=1)
    wait_until(
        lambda: client.runs.get(meters.latest_run_id).state == "accepted",
        timeout=15,
        what="the priority 1 read waiting for the bus",
    )
    urgent = _read(client, stack, "pump1", "run", priority=9)
    wait_until(
        lambda: client.runs.get(urgent.latest_run_id).state == "accepted",
        timeout=15,
        what="the priority 9 read waiting for the bus",
    )
    plant.answer_held()

    for task in (holder, meters, urgent):
        done = client.tasks.wait(task.id, timeout=30)
        assert done.status == "succeeded", client.runs.get(done.latest_run_id)
    after = [(r.unit, r.function_code) for r in plant.requests[held_at:]]
    assert after[:2] == [(PUMP_UNIT, READ_COILS), (PUMP_UNIT, READ_HOLDING)], after


def test_commands_held_for_an_offline_agent_go_priority_first_when_it_returns(
    real_stack, client_of
) -> None:
    """The gateway holds both while skid-a is away and sends the priority 9 one first when
    it returns, though it came second: the agent runs it first."""
    stack, client = real_stack, client_of(real_stack)
    plant = stack.plant
    wait_until(
        lambda: {"pump1"} <= {d.name for d in client.fleet.devices(site=stack.config.site)},
        timeout=15,
        what="skid-a's devices published",
    )
    stack.stop_agent("skid-a")
    wait_until(
        lambda: (
            not any(
                a.online for a in client.fleet.agents(site=stack.config.site) if a.name == "skid-a"
            )
        ),
        timeout=15,
        what="skid-a offline",
    )
    meters = _read(client, stack, "pump1", "speed_setpoint", priority=1)
    urgent = _read(client, stack, "pump1", "run", priority=9)
    for task in (meters, urgent):
        wait_until(
            lambda t=task: client.tasks.get(t.id).status == "delivered",
            timeout=15,
            what="held at the gateway",
        )
    held_at = len(plant.requests)
    stack.start_agent("skid-a")
    for task in (meters, urgent):
        done = client.tasks.wait(task.id, timeout=30)
        assert done.status == "succeeded", client.runs.get(done.latest_run_id)
    reads = [
        (r.unit, r.function_code)
        for r in plant.requests[held_at:]
        if (r.unit, r.function_code) in {(PUMP_UNIT, READ_COILS), (PUMP_UNIT, READ_HOLDING)}
    ]
    assert reads == [(PUMP_UNIT, READ_COILS), (PUMP_UNIT, READ_HOLDING)], reads
