"""A write that waits for its physical effect (params.expect), over RabbitMQ, Mosquitto
and the simulated plant: pump 1's actual_speed ramps to its setpoint (1500 rpm/s, so
1200 rpm in under a second) only while its `run` coil is on.

The machine is set and checked by reading the simulator directly, never through TME.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner
from waiting import wait_until

from tme.cli.main import app
from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

PUMP_UNIT, RUN_COIL, SPEED_SETPOINT = 1, 0, 0  # configs/profiles/pump.yaml


def _target(stack: LocalStack, device: str = "pump1") -> dict[str, str]:
    return {"site": stack.config.site, "agent": "skid-a", "device": device}


def _cli(stack: LocalStack, *args: str) -> str:
    result = CliRunner().invoke(
        app, [*args, "--url", stack.url], env={"TME_TOKEN": stack.token, "COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_a_speed_set_through_the_cli_succeeds_once_the_pump_reaches_it(
    real_stack, client_of
) -> None:
    """`tme task create --param 'expect={...}'` (YAML), and `tme run show` says what was
    reached and when."""
    real_stack.plant.write_bit(PUMP_UNIT, RUN_COIL, True)  # the motor may turn
    made = _cli(
        real_stack, "task", "create", "--name", "speed up", "--op", "modbus.write",
        "--site", real_stack.config.site, "--agent", "skid-a", "--device", "pump1",
        "--param", "point=speed_setpoint", "--param", "value=1200",
        "--param", "expect={point: actual_speed, tolerance: 20, within_s: 5}",
        "--timeout", "10", "--json",
    )  # fmt: skip
    task = json.loads(made)
    assert task["params"]["expect"] == {"point": "actual_speed", "tolerance": 20, "within_s": 5}
    client = client_of(real_stack)
    done = client.tasks.wait(task["id"], timeout=30)
    run = client.runs.get(done.latest_run_id)
    assert done.status == "succeeded", run
    effect = run.result["effect"]
    assert effect["reached"] and abs(effect["value"] - 1200) <= 20
    assert 0 < effect["after_s"] < 5
    assert real_stack.plant.read_register(PUMP_UNIT, 0, "input_register") >= 1180
    shown = " ".join(_cli(real_stack, "run", "show", run.id).split())
    assert f"effect: actual_speed reached {effect['value']} rpm after {effect['after_s']:g} s" in (
        shown
    )
    assert "(expected 1200 ± 20 rpm)" in shown


def test_a_speed_the_pump_cannot_reach_fails_saying_what_it_read(real_stack, client_of) -> None:
    """The motor is off (`run` false): the setpoint is written, actual_speed stays 0, and
    the run fails as a write that reached the device (not retried as not sent)."""
    real_stack.plant.write_bit(PUMP_UNIT, RUN_COIL, False)
    client = client_of(real_stack)
    expect = {"point": "actual_speed", "tolerance": 20, "within_s": 1}
    task = client.tasks.create(
        name="speed up, motor off",
        op="modbus.write",
        target=_target(real_stack),
        params={"point": "speed_setpoint", "value": 1200, "expect": expect},
        timeout_s=10,
        retries={"max": 2, "backoff_s": 0},
    )
    done = client.tasks.wait(task.id, timeout=30)
    run = client.runs.get(done.latest_run_id)
    assert done.status == "failed", run
    assert run.reason.startswith("effect not reached: actual_speed read 0 rpm after 1.")
    said, _, retry = run.reason.partition("; ")
    assert said.endswith(" s, expected 1200 ± 20 rpm")
    # the write was sent: not retried as one that never started
    assert run.attempt == 1 and retry.startswith("not retried: a write is retried only when")
    assert run.result["written"] == 1200 and not run.result["effect"]["reached"]
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 1200


def test_the_bus_serves_another_device_while_a_write_waits_for_its_effect(
    real_stack, client_of
) -> None:
    """pump1 and tank1 share one Modbus TCP connection: a read of the tank completes
    while the pump's write waits (up to 5 s) for a speed it never reaches."""
    real_stack.plant.write_bit(PUMP_UNIT, RUN_COIL, False)
    client = client_of(real_stack)
    expect = {"point": "actual_speed", "within_s": 5}
    waiting = client.tasks.create(
        name="speed up, motor off",
        op="modbus.write",
        target=_target(real_stack),
        params={"point": "speed_setpoint", "value": 900, "expect": expect},
        timeout_s=10,
    )
    wait_until(
        lambda: client.runs.get(waiting.latest_run_id).state == "running",
        timeout=15,
        what="the write waiting for its effect",
    )
    read = client.tasks.create(
        name="tank level",
        op="modbus.read",
        target=_target(real_stack, "tank1"),
        params={"point": "level"},
    )
    assert client.tasks.wait(read.id, timeout=4).status == "succeeded"
    assert client.runs.get(waiting.latest_run_id).state == "running"  # still waiting
    client.runs.cancel(waiting.latest_run_id)
    done = client.tasks.wait(waiting.id, timeout=4)  # a stop ends the wait at once
    assert done.status == "canceled", client.runs.get(done.latest_run_id)


def test_a_device_stop_ends_the_wait_at_once_and_writes_the_safe_values(
    real_stack, client_of
) -> None:
    """The stop cancels the waiting write and writes run false, speed 0 without waiting
    for a cut-off write to land: none was in flight, only the wait."""
    real_stack.plant.write_bit(PUMP_UNIT, RUN_COIL, False)
    client = client_of(real_stack)
    expect = {"point": "actual_speed", "within_s": 8}
    waiting = client.tasks.create(
        name="speed up, motor off",
        op="modbus.write",
        target=_target(real_stack),
        params={"point": "speed_setpoint", "value": 900, "expect": expect},
        timeout_s=10,
    )
    wait_until(
        lambda: client.runs.get(waiting.latest_run_id).state == "running",
        timeout=15,
        what="the write waiting for its effect",
    )
    stopped = client.fleet.stop("pump1", "operator stop", site=real_stack.config.site)
    done = client.tasks.wait(waiting.id, timeout=4)
    assert done.status == "canceled", client.runs.get(done.latest_run_id)
    assert stopped.run_id is not None
    wait_until(
        lambda: client.runs.get(stopped.run_id).state == "succeeded",
        timeout=4,
        what="the stop written",
    )
    lines = [line.line for line in client.runs.get(stopped.run_id).log]
    assert not any("cut off" in line for line in lines), lines
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0
