"""`tme site stop` over RabbitMQ and Mosquitto: the pump and the conveyor of the site, on
two agents, are stopped at once (their safe values on the plant, read directly, never
through TME); the tank and the instrument, without safe values, are left alone and named;
each device then says it is stopped, and the pump refuses a change until resumed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner
from waiting import wait_until

from tme.cli.main import app
from tme.cli.output import console

pytestmark = pytest.mark.external_service

PUMP_UNIT, CONVEYOR_UNIT = 1, 3  # configs/profiles/pump.yaml, conveyor.yaml
RUN_OR_ENABLE, SPEED_SETPOINT = 0, 0  # the coil and the register of both profiles


def test_a_sites_stop_stops_each_device_with_safe_values(
    real_stack, client_of, monkeypatch
) -> None:
    stack, client = real_stack, client_of(real_stack)
    site = stack.config.site
    wait_until(
        lambda: (
            {"pump1", "conveyor1", "tank1"} <= {d.name for d in client.fleet.devices(site=site)}
        ),
        timeout=15,
        what="the site's devices published",
    )
    plant = stack.plant
    for unit, speed in ((PUMP_UNIT, 1500), (CONVEYOR_UNIT, 300)):  # both machines running
        plant.write_bit(unit, RUN_OR_ENABLE, True)
        plant.write_register(unit, SPEED_SETPOINT, speed)
    stop = ["site", "stop", site, "--reason", "flood in hall 2", "--url", stack.url]
    monkeypatch.setattr(console, "width", 80)  # each line said whole, whatever the terminal
    result = CliRunner().invoke(app, stop, env={"TME_TOKEN": stack.token})
    assert result.exit_code == 0, result.output
    said = result.stdout.splitlines()
    assert said[0] == f"stop of site {site}: 2 device(s), 2 left alone", said
    assert any(line.startswith("  left alone: skid-a/tank1: ") for line in said), said
    assert any(line.startswith("  left alone: lab-c/") for line in said), said
    for device, safe in (
        ("skid-a/pump1", "run = false, speed_setpoint = 0"),
        ("line-b/conveyor1", "enable = false, speed_setpoint = 0"),
    ):
        assert any(line.startswith(f"{device}: safe values written at ") for line in said), said
        assert f"{device}: the agent: succeeded: wrote {safe} (its safe values)" in said, said
    assert plant.read_bit(PUMP_UNIT, RUN_OR_ENABLE) is False
    assert plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0
    assert plant.read_bit(CONVEYOR_UNIT, RUN_OR_ENABLE) is False
    assert plant.read_register(CONVEYOR_UNIT, SPEED_SETPOINT) == 0

    def stopped() -> set[str]:
        return {d.name for d in client.fleet.devices(site=site) if d.stopped is not None}

    wait_until(lambda: stopped() == {"pump1", "conveyor1"}, timeout=15, what="stops reported")
    start = client.tasks.create(
        name="start",
        op="modbus.write",
        target={"site": site, "agent": "skid-a", "device": "pump1"},
        params={"point": "speed_setpoint", "value": 900},
    )
    assert client.tasks.wait(start.id, timeout=30).status == "rejected"
    assert plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0
