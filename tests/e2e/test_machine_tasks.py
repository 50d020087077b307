"""Tasks created through the REST API act on simulated machines over the real path.

The machine is checked by reading the simulator directly, never through TME.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session, select
from waiting import wait_until

from tme.controller.store.models import Device
from tme.errors import ValidationError
from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

PUMP_UNIT, SPEED_SETPOINT = 1, 0  # configs/profiles/pump.yaml
CONVEYOR_UNIT = 3  # configs/profiles/conveyor.yaml


def _target(stack: LocalStack, agent: str, device: str) -> dict[str, str]:
    return {"site": stack.config.site, "agent": agent, "device": device}


def _wait_published(client, target: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    device = target["device"]
    wait_until(
        lambda: any(d.name == device for d in client.fleet.devices(site=target["site"])),
        timeout=15,
        what=f"{device} published",
    )


def test_write_task_changes_the_register(real_stack, client_of) -> None:
    client = client_of(real_stack)
    task = client.tasks.create(
        name="set pump speed",
        op="modbus.write",
        target=_target(real_stack, "skid-a", "pump1"),
        params={"point": "speed_setpoint", "value": 1234, "verify": True},
    )
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "succeeded", client.runs.get(done.latest_run_id)
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 1234
    detail = client.runs.get(done.latest_run_id)
    hops = [e.to_state for e in detail.events]
    for hop in ("queued", "dispatched", "delivered", "accepted", "running", "succeeded"):
        assert hop in hops, hops


def test_read_task_returns_the_simulator_value(real_stack, client_of) -> None:
    real_stack.plant.write_register(PUMP_UNIT, SPEED_SETPOINT, 777)
    client = client_of(real_stack)
    task = client.tasks.create(
        name="read setpoint",
        op="modbus.read",
        target=_target(real_stack, "skid-a", "pump1"),
        params={"point": "speed_setpoint"},
    )
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "succeeded"
    result = client.runs.get(done.latest_run_id).result
    assert "777" in str(result), result


def test_serial_command_returns_the_instrument_answer(real_stack, client_of) -> None:
    client = client_of(real_stack)
    task = client.tasks.create(
        name="identify",
        op="serial.command",
        target=_target(real_stack, "lab-c", "meter1"),
        params={"command": "identify"},
    )
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "succeeded", client.runs.get(done.latest_run_id)
    assert "TME" in str(client.runs.get(done.latest_run_id).result).upper()


def test_out_of_envelope_write_is_refused_and_nothing_changes(real_stack, client_of) -> None:
    """Once the agent has published its pump (presence over MQTT and RabbitMQ), the
    controller refuses the write at create time; where its view lets one through (the
    profile at the edge narrowed since), the agent rejects it: nothing reaches the pump."""
    before = real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT)
    writes_before = real_stack.plant.request_count(PUMP_UNIT, writes_only=True)
    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    overspeed = {"point": "speed_setpoint", "value": 9000}
    _wait_published(client, target)
    with pytest.raises(ValidationError) as info:
        client.tasks.create(name="overspeed", op="modbus.write", target=target, params=overspeed)
    assert [e["field"] for e in info.value.field_errors] == ["params.value"]
    assert "above the maximum 3000" in info.value.message

    _widen_published_setpoint(real_stack, target)
    task = client.tasks.create(name="overspeed", op="modbus.write", target=target, params=overspeed)
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "rejected"
    assert "max" in client.runs.get(done.latest_run_id).reason.lower()
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == before
    assert real_stack.plant.request_count(PUMP_UNIT, writes_only=True) == writes_before


def _widen_published_setpoint(stack: LocalStack, target: dict[str, str]) -> None:
    """The controller's view of pump1 says 0..10000 rpm; the agent's profile 0..3000."""
    with Session(stack.engine) as session:
        device = session.exec(
            select(Device).where(
                Device.site == target["site"], Device.agent == "skid-a", Device.name == "pump1"
            )
        ).one()
        device.points = [
            {**p, "max": 10000} if p["name"] == "speed_setpoint" else p for p in device.points
        ]
        session.add(device)
        session.commit()


def test_modbus_exception_fails_the_run_and_the_agent_keeps_serving(real_stack, client_of) -> None:
    client = client_of(real_stack)
    real_stack.plant.inject_fault(
        PUMP_UNIT, table="holding_register", address=SPEED_SETPOINT, exception=4
    )
    target = _target(real_stack, "skid-a", "pump1")
    task = client.tasks.create(
        name="faulty read", op="modbus.read", target=target, params={"point": "speed_setpoint"}
    )
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "failed"
    assert "4" in client.runs.get(done.latest_run_id).reason
    real_stack.plant.clear_faults()
    again = client.tasks.create(
        name="read after fault", op="modbus.read", target=target, params={"point": "speed_setpoint"}
    )
    assert client.tasks.wait(again.id, timeout=30).status == "succeeded"


def test_demo_configuration_runs_a_write(embedded_stack, client_of) -> None:
    """memory:// bus and the embedded MQTT 3.1.1 broker, as `tme demo` runs."""
    client = client_of(embedded_stack)
    task = client.tasks.create(
        name="set pump speed",
        op="modbus.write",
        target=_target(embedded_stack, "skid-a", "pump1"),
        params={"point": "speed_setpoint", "value": 1500},
    )
    assert client.tasks.wait(task.id, timeout=30).status == "succeeded"
    assert embedded_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 1500


def test_command_for_an_offline_agent_waits_and_runs_once(real_stack, client_of) -> None:
    client = client_of(real_stack)
    real_stack.stop_agent("line-b")
    wait_until(lambda: not _online(client, real_stack, "line-b"), what="line-b offline")
    task = client.tasks.create(
        name="set conveyor speed",
        op="modbus.write",
        target=_target(real_stack, "line-b", "conveyor1"),
        params={"point": "speed_setpoint", "value": 1.5},
    )
    wait_until(lambda: client.tasks.get(task.id).status == "delivered", what="held at gateway")
    writes_before = real_stack.plant.request_count(CONVEYOR_UNIT, writes_only=True)
    real_stack.start_agent("line-b")
    assert client.tasks.wait(task.id, timeout=30).status == "succeeded"
    assert real_stack.plant.request_count(CONVEYOR_UNIT, writes_only=True) == writes_before + 1


def _online(client, stack: LocalStack, name: str) -> bool:
    return any(a.online for a in client.fleet.agents(site=stack.config.site) if a.name == name)


def test_a_device_locked_out_at_its_agent_refuses_writes_until_unlocked(
    real_stack, client_of
) -> None:
    """`tme agent lock` at the agent: presence tells the controller (MQTT, gateway,
    RabbitMQ), a write task gets a warning and is rejected by the agent with the
    lockout's reason, the pump untouched; reads still run; `tme agent unlock` hands it back."""
    from typer.testing import CliRunner

    from tme.cli.main import app

    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    site = target["site"]

    def pump1():  # as the API shows it
        return next((d for d in client.fleet.devices(site=site) if d.name == "pump1"), None)

    wait_until(lambda: pump1() is not None, timeout=15, what="pump1 published")
    config = real_stack.agent_files["skid-a"]  # the agent's own config, as tme demo prints it
    runner = CliRunner()
    lock = ["agent", "lock", "pump1", "--reason", "seal replacement", "--by", "alice"]
    assert runner.invoke(app, [*lock, "-c", str(config)]).exit_code == 0
    wait_until(lambda: pump1().lockout is not None, timeout=15, what="the lockout reported")
    assert pump1().lockout.by == "alice" and pump1().lockout.reason == "seal replacement"

    before = real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT)
    writes_before = real_stack.plant.request_count(PUMP_UNIT, writes_only=True)
    setpoint = {"point": "speed_setpoint", "value": before + 11}
    task = client.tasks.create(name="set speed", op="modbus.write", target=target, params=setpoint)
    assert any("locked out at its agent by alice" in w for w in task.warnings), task.warnings
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "rejected"
    assert "locked out by alice" in client.runs.get(done.latest_run_id).reason
    read = client.tasks.create(name="watch", op="modbus.read", target=target, params=READ_SPEED)
    assert client.tasks.wait(read.id, timeout=30).status == "succeeded"
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == before
    assert real_stack.plant.request_count(PUMP_UNIT, writes_only=True) == writes_before

    assert runner.invoke(app, ["agent", "unlock", "pump1", "-c", str(config)]).exit_code == 0
    wait_until(lambda: pump1().lockout is None, timeout=15, what="the unlock reported")
    again = client.tasks.create(name="set speed", op="modbus.write", target=target, params=setpoint)
    assert again.warnings == []
    assert client.tasks.wait(again.id, timeout=30).status == "succeeded"
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == before + 11


READ_SPEED = {"point": "speed_setpoint"}


def test_a_device_that_stops_answering_shows_as_down_until_it_answers_again(
    real_stack, client_of
) -> None:
    """The agent tells in its presence whether a device answered its last operation;
    the API, the SDK and /metrics (tme_device_link_up) show it."""
    import httpx

    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    site = target["site"]

    def link():  # pump1's, as the API shows it
        device = next((d for d in client.fleet.devices(site=site) if d.name == "pump1"), None)
        return device.link if device is not None else None

    def metric() -> str:
        body = httpx.get(
            f"{real_stack.url}/metrics", headers={"Authorization": f"Bearer {real_stack.token}"}
        ).text
        sample = f'tme_device_link_up{{agent="skid-a",device="pump1",site="{site}"}}'
        return next((line for line in body.splitlines() if line.startswith(sample)), "")

    def read() -> str:
        task = client.tasks.create(name="read", op="modbus.read", target=target, params=READ_SPEED)
        return client.tasks.wait(task.id, timeout=30).status

    assert read() == "succeeded"
    wait_until(lambda: link() is not None and link().state == "ok", timeout=15, what="link ok")
    assert metric().endswith(" 1.0")
    real_stack.plant.inject_fault(PUMP_UNIT, drop=True)  # a device that resets mid-request
    assert read() == "failed"
    wait_until(lambda: link().state == "down", timeout=15, what="link down")
    assert link().error, link()
    assert metric().endswith(" 0.0")
    real_stack.plant.clear_faults()
    assert read() == "succeeded"
    wait_until(lambda: link().state == "ok", timeout=15, what="link ok again")
    assert metric().endswith(" 1.0")


def test_an_interlock_at_the_agent_refuses_a_start_until_the_tank_has_room(
    real_stack, client_of
) -> None:
    """The demo's pump1 starts only while tank1 is below 95 %: the agent reads the level
    just before the write, over the real path; the API shows the interlock; stopping (the
    profile's safe value) is never refused."""
    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    site = target["site"]

    def run_point():  # pump1's `run` as the API shows it
        devices = {d.name: d for d in client.fleet.devices(site=site)}
        pump = devices.get("pump1")
        return next((p for p in pump.points if p.name == "run"), None) if pump else None

    wait_until(lambda: run_point() is not None, timeout=15, what="pump1 published")
    point = run_point()
    assert point.safe_value is False
    assert [(i.device, i.point, i.below) for i in point.interlocks] == [("tank1", "level", 95)]
    assert point.needs() == "tank1.level below 95 (the tank it fills is nearly full)"

    real_stack.plant.physics.volume_l = 9_800.0  # 98 %; its outlet valve is shut
    wait_until(lambda: real_stack.plant.read_register(2, 0, "input_register") >= 980)
    start = {"point": "run", "value": True}
    task = client.tasks.create(name="start pump", op="modbus.write", target=target, params=start)
    done = client.tasks.wait(task.id, timeout=30)
    assert done.status == "rejected"
    reason = client.runs.get(done.latest_run_id).reason
    assert "interlock: tank1.level is 98" in reason and "needs it below 95" in reason, reason
    assert real_stack.plant.read_bit(PUMP_UNIT, 0) is False
    assert real_stack.plant.writes_to(PUMP_UNIT, 0) == []

    stop = {"point": "run", "value": False}
    task = client.tasks.create(name="stop pump", op="modbus.write", target=target, params=stop)
    assert client.tasks.wait(task.id, timeout=30).status == "succeeded"

    real_stack.plant.physics.volume_l = 5_000.0
    wait_until(lambda: real_stack.plant.read_register(2, 0, "input_register") <= 500)
    task = client.tasks.create(name="start pump", op="modbus.write", target=target, params=start)
    assert client.tasks.wait(task.id, timeout=30).status == "succeeded"
    assert real_stack.plant.read_bit(PUMP_UNIT, 0) is True


def test_tme_device_stop_cancels_what_waits_for_the_pump_and_writes_its_safe_values(
    steady_stack, client_of
) -> None:
    """Over RabbitMQ and Mosquitto: a write runs (the pump answers slowly), another waits
    behind it at the agent; `tme device stop` cancels both and the agent writes the
    pump's safe values (run false, speed 0), again after the cut-off write landed.

    The pump holds its answer 4 s (the agents wait 5): the stop must come while the
    write runs, and on a busy CI machine it once came after an answer held 1.5 s, when
    the waiting write had run."""
    from typer.testing import CliRunner

    from tme.cli.main import app

    real_stack = steady_stack
    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    plant = real_stack.plant
    _wait_published(client, target)
    plant.write_bit(PUMP_UNIT, 0, True)  # the pump runs
    plant.inject_fault(unit=PUMP_UNIT, table="holding_register", delay_s=4, remaining=1)
    fast = {"point": "speed_setpoint", "value": 1800}
    slow = client.tasks.create(name="speed", op="modbus.write", target=target, params=fast)
    wait_until(lambda: client.runs.get(slow.latest_run_id).state == "running", timeout=15)
    start = {"point": "run", "value": True}
    queued = client.tasks.create(name="start", op="modbus.write", target=target, params=start)
    # it waits at the agent, behind the running write (not on its way: a stop before it
    # arrives would have it refused, not canceled)
    wait_until(
        lambda: client.runs.get(queued.latest_run_id).state == "accepted",
        timeout=15,
        what="the second write waiting at the agent",
    )

    result = CliRunner().invoke(
        app,
        ["device", "stop", "pump1", "--reason", "leak at the seal", "--url", real_stack.url],
        env={"TME_TOKEN": real_stack.token},
    )
    assert result.exit_code == 0, result.output
    assert "the agent: succeeded: wrote run = false, speed_setpoint = 0 (its safe values)" in (
        " ".join(result.stdout.split())
    )
    for task in (slow, queued):
        done = client.tasks.wait(task.id, timeout=30)
        assert done.status == "canceled", client.runs.get(done.latest_run_id)
    wait_until(lambda: plant.held_requests == 0, what="the cut-off write landed")
    assert plant.read_bit(PUMP_UNIT, 0) is False
    assert plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0

    # latched at the agent: the API shows it, a write is taken with a warning and refused
    def pump1():
        return next(d for d in client.fleet.devices(site=target["site"]) if d.name == "pump1")

    wait_until(lambda: pump1().stopped is not None, timeout=15, what="the stop reported")
    assert pump1().stopped.reason == "leak at the seal"
    again = client.tasks.create(name="start", op="modbus.write", target=target, params=start)
    assert any("was stopped by" in w for w in again.warnings), again.warnings
    assert client.tasks.wait(again.id, timeout=30).status == "rejected"
    assert plant.read_bit(PUMP_UNIT, 0) is False

    resume = ["device", "resume", "pump1", "--reason", "seal replaced", "--url", real_stack.url]
    result = CliRunner().invoke(app, resume, env={"TME_TOKEN": real_stack.token})
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert "the agent: succeeded: resumed (stopped by " in said and ": leak at the seal)" in said
    wait_until(lambda: pump1().stopped is None, timeout=15, what="the resume reported")
    started = client.tasks.create(name="start", op="modbus.write", target=target, params=start)
    assert client.tasks.wait(started.id, timeout=30).status == "succeeded"
    assert plant.read_bit(PUMP_UNIT, 0) is True

    with pytest.raises(ValidationError, match="no point with a safe_value"):
        client.fleet.stop("tank1", "no safe values", site=target["site"])


def test_after_a_stop_the_pumps_values_are_what_the_stop_read_back(real_stack, client_of) -> None:
    """A verified write set the speed to 1200; a stop writes 0: the device's values say
    0, read back from the pump by the stop, not the 1200 from before it."""
    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    _wait_published(client, target)
    fast = {"point": "speed_setpoint", "value": 1200, "verify": True}
    task = client.tasks.create(name="speed", op="modbus.write", target=target, params=fast)
    assert client.tasks.wait(task.id, timeout=30).status == "succeeded"

    def values() -> dict:  # type: ignore[type-arg]
        return {p.name: p for p in client.fleet.values("pump1", site=target["site"]).points}

    assert values()["speed_setpoint"].value == 1200
    stopped = client.fleet.stop("pump1", "seal check", site=target["site"])
    stop = client.tasks.wait(stopped.task_id, timeout=30)
    assert stop.status == "succeeded"
    assert real_stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0
    setpoint, run = values()["speed_setpoint"], values()["run"]
    assert (setpoint.value, setpoint.read, setpoint.op) == (0, True, "device.stop")
    assert (run.value, run.read) == (False, True)
    assert setpoint.run_id == stop.latest_run_id


def test_tme_task_check_says_what_a_scheduled_start_would_do_now_and_writes_nothing(
    real_stack, client_of
) -> None:
    """Over RabbitMQ and Mosquitto: the weekday 06:00 start of pump1 is checked now. The
    agent reads tank1's level for the start's interlock and answers what the start would
    do, or why it would be refused; the pump is never written either way."""
    from typer.testing import CliRunner

    from tme.cli.main import app

    client = client_of(real_stack)
    target = _target(real_stack, "skid-a", "pump1")
    plant = real_stack.plant
    _wait_published(client, target)
    start = client.tasks.create(
        name="morning start",
        op="modbus.write",
        target=target,
        params={"point": "run", "value": True},
        schedule={"cron": "0 6 * * 1-5"},
    )
    check = ["task", "check", str(start.id), "--url", real_stack.url]

    plant.physics.volume_l = 4_000.0  # 40 %: room in the tank
    wait_until(lambda: plant.read_register(2, 0, "input_register") <= 410)
    result = CliRunner().invoke(app, check, env={"TME_TOKEN": real_stack.token})
    assert result.exit_code == 0, result.output
    said = " ".join(result.stdout.split())
    assert f"task {start.id}: would write run = True to pump1; nothing was written" in said
    assert "interlock tank1.level below 95: " in said and "(holds)" in said  # what was read

    plant.physics.volume_l = 9_800.0  # 98 %: the start's interlock refuses it
    wait_until(lambda: plant.read_register(2, 0, "input_register") >= 980)
    result = CliRunner().invoke(app, check, env={"TME_TOKEN": real_stack.token})
    assert result.exit_code == 1, result.output
    assert f"task {start.id}: would be refused: interlock: tank1.level is 98" in (
        " ".join(result.stdout.split())
    )
    assert plant.writes_to(PUMP_UNIT, 0) == []  # neither check wrote the pump's run coil
    assert client.tasks.get(start.id).status == "idle"  # the task itself never ran
