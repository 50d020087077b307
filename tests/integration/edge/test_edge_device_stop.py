"""A stop of a device at the agent (real Mosquitto, simulated plant): what was queued or
running for the device is canceled, saying so, and its safe values are written."""

from __future__ import annotations

from pathlib import Path

import pytest
from commands import make_command
from edge_helpers import send
from waiting import wait_until

from tme.protocol import Presence, evt_topic, state_topic
from tme.simulators.modbus_plant import PlantSimulator

pytestmark = pytest.mark.external_service

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
PUMP = 1
RUN_COIL, SPEED = 0, 0


def pump_agent(agent_factory, site: str, agent: str, port: int):  # type: ignore[no-untyped-def]
    connection = {"host": "127.0.0.1", "port": port, "timeout_s": 2}
    device = {
        "driver": "modbus_tcp",
        "connection": connection,
        "unit": PUMP,
        "profile": str(PROFILES / "pump.yaml"),  # safe values: run false, speed 0
    }
    return agent_factory(site, agent, devices={"pump1": device})


def slow_write_running(plant, runner, watcher, site: str, agent: str):  # type: ignore[no-untyped-def]
    """A write of speed 1800 that the pump answers after 1.5 s, once it runs: the stop
    that comes now cuts it off, and it lands during the stop's hold."""
    plant.inject_fault(unit=PUMP, table="holding_register", delay_s=1.5, remaining=1)
    slow = make_command(
        site, agent, "modbus.write", device="pump1",
        params={"point": "speed_setpoint", "value": 1800},
    )  # fmt: skip
    send(runner.agent.link, slow)
    watcher.wait_for(lambda: any(e.type == "started" for e in watcher.events(slow.id)))
    return slow


def test_a_stop_cancels_what_waits_for_the_device_and_writes_its_safe_values(
    names, agent_factory, watcher_factory
) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        plant.write_register(PUMP, SPEED, 1500)
        plant.write_bit(PUMP, RUN_COIL, True)
        runner = pump_agent(agent_factory, site, agent, plant.port)
        # a write the pump answers slowly holds the bus; another waits behind it
        slow = slow_write_running(plant, runner, watcher, site, agent)
        queued = make_command(
            site, agent, "modbus.write", device="pump1", params={"point": "run", "value": True}
        )
        send(runner.agent.link, queued)
        watcher.wait_for(lambda: any(e.type == "accepted" for e in watcher.events(queued.id)))

        stop = make_command(
            site, agent, "device.stop", device="pump1", params={"reason": "leak at the seal"}
        )
        send(runner.agent.link, stop)
        stopped = watcher.wait_final(stop.id)[-1]
        assert stopped.type == "succeeded", stopped.reason
        first_pass = stopped.result.pop("first_pass")
        assert stopped.result == {
            "stopped": "pump1",
            "written": {"run": False, "speed_setpoint": 0},
            "read_back": {"run": False, "speed_setpoint": 0},  # after the second pass
        }
        # the first pass was said at once, before the hold and the second pass
        types = [e.type for e in watcher.events(stop.id)]
        assert types.index("progress") < types.index("succeeded"), types
        (said,) = [e for e in watcher.events(stop.id) if e.type == "progress"]
        assert said.result == {"first_pass": first_pass}
        assert first_pass["written"] == {"run": False, "speed_setpoint": 0}
        assert first_pass["not_written"] == {} and 0 < first_pass["hold_s"] <= 2
        assert "stop: wrote speed_setpoint = 0" in (said.line or "")  # its lines ride with it
        for command, how in ((slow, "stopped on request"), (queued, "canceled before it started")):
            final = watcher.wait_final(command.id)[-1]
            assert final.type == "canceled"
            assert final.reason == f"{how}: the device was stopped (leak at the seal)"
        # the cut-off write was on its way: it lands, and the stop's second pass after it
        wait_until(lambda: plant.held_requests == 0, what="the cut-off write landed")
        assert plant.writes_to(PUMP, SPEED)[0] == (1800,)
        assert plant.read_register(PUMP, SPEED) == 0
        assert plant.read_bit(PUMP, RUN_COIL) is False
        assert "writing again then" in "\n".join(e.line or "" for e in watcher.events(stop.id))


def test_a_stop_of_a_device_without_safe_values_is_rejected(
    names, agent_factory, watcher_factory, tmp_path: Path
) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    profile = tmp_path / "valve.yaml"
    profile.write_text(
        "name: valve\npoints:\n  opening: {address: 0, table: holding_register, access: rw}\n"
    )
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        device = {
            "driver": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": plant.port},
            "unit": 2,
            "profile": str(profile),
        }
        runner = agent_factory(site, agent, devices={"valve": device})
        stop = make_command(site, agent, "device.stop", device="valve")
        send(runner.agent.link, stop)
        final = watcher.wait_final(stop.id)[-1]
        assert final.type == "rejected"
        assert final.reason is not None and "no point with a safe_value" in final.reason
        assert plant.request_count(2, writes_only=True) == 0
        assert runner.agent.stops.get("valve") is None  # a refused stop latches nothing


def test_a_stopped_device_refuses_changes_until_it_is_resumed(
    names, agent_factory, watcher_factory
) -> None:
    """The stop latches, in the agent's state directory: a restarted agent still refuses
    the pump's writes (reads run) and says so in its presence, until a device.resume."""
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent), state_topic(site, agent)])
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        runner = pump_agent(agent_factory, site, agent, plant.port)
        stop = make_command(
            site, agent, "device.stop", device="pump1",
            params={"reason": "leak at the seal", "by": "alice"},
        )  # fmt: skip
        send(runner.agent.link, stop)
        assert watcher.wait_final(stop.id)[-1].type == "succeeded"
        runner.stop()
        runner = pump_agent(agent_factory, site, agent, plant.port)

        def stopped_in_presence() -> dict | None:
            said = [m for m in watcher.messages if isinstance(m, Presence) and m.devices]
            return said[-1].devices[0].get("stopped") if said else None

        watcher.wait_for(lambda: stopped_in_presence() is not None)
        assert stopped_in_presence()["by"] == "alice"
        start = make_command(
            site, agent, "modbus.write", device="pump1", params={"point": "run", "value": True}
        )
        send(runner.agent.link, start)
        refused = watcher.wait_final(start.id)[-1]
        assert refused.type == "rejected"
        assert refused.reason is not None
        assert "was stopped by alice" in refused.reason and "until it is resumed" in refused.reason
        read = make_command(site, agent, "modbus.read", device="pump1", params={"point": "run"})
        send(runner.agent.link, read)
        assert watcher.wait_final(read.id)[-1].type == "succeeded"

        resume = make_command(site, agent, "device.resume", device="pump1")
        send(runner.agent.link, resume)
        resumed = watcher.wait_final(resume.id)[-1]
        assert resumed.type == "succeeded" and resumed.reason == "resumed"
        watcher.wait_for(lambda: stopped_in_presence() is None)
        again = make_command(
            site, agent, "modbus.write", device="pump1", params={"point": "run", "value": True}
        )
        send(runner.agent.link, again)
        assert watcher.wait_final(again.id)[-1].type == "succeeded"
        assert plant.read_bit(PUMP, RUN_COIL) is True


def test_a_stop_delivered_again_after_a_resume_does_not_latch_again(
    names, agent_factory, watcher_factory
) -> None:
    """RabbitMQ and MQTT deliver at least once: the copy is answered from the record."""
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        runner = pump_agent(agent_factory, site, agent, plant.port)
        stop = make_command(site, agent, "device.stop", device="pump1", params={"reason": "x"})
        send(runner.agent.link, stop)
        watcher.wait_final(stop.id)
        resume = make_command(site, agent, "device.resume", device="pump1")
        send(runner.agent.link, resume)
        watcher.wait_final(resume.id)
        send(runner.agent.link, stop)  # the same stop, delivered again
        watcher.wait_final(stop.id, count=2)
        assert runner.agent.stops.get("pump1") is None


def test_a_stop_whose_hold_outlasts_its_timeout_still_writes_the_safe_values_again(
    names, agent_factory, watcher_factory
) -> None:
    """The pump answers within 2 s, the stop's timeout is 1 s: the stop holds the safe
    values 2 s after the write it cut off, and its timeout counts from the end of that
    hold, so the cut-off write that lands meanwhile is overwritten by the second pass
    (where the stop's timeout cut it off during the hold, leaving the pump at 1800)."""
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    with PlantSimulator.run_in_thread(tick_s=None) as plant:
        runner = pump_agent(agent_factory, site, agent, plant.port)
        slow_write_running(plant, runner, watcher, site, agent)
        stop = make_command(
            site, agent, "device.stop", device="pump1", params={"reason": "leak"}, timeout_s=1
        )
        send(runner.agent.link, stop)
        stopped = watcher.wait_final(stop.id)[-1]
        assert stopped.type == "succeeded", stopped.reason
        assert stopped.result["first_pass"]["hold_s"] > 1  # longer than the stop's timeout
        assert plant.writes_to(PUMP, SPEED)[0] == (1800,)  # the cut-off write landed, then
        assert plant.read_register(PUMP, SPEED) == 0  # the second pass after it
