"""A write's physical effect (params.expect): the rule, the agent's checks, and the wait
that reads the feedback point without holding the bus between reads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_edge_checks import PUMP, command, devices
from waiting import wait_until_async

from tme.agents.checks import Refused, check_command, what_it_would_do
from tme.agents.command_record import CommandRecord
from tme.agents.devices import Device, DeviceSet
from tme.agents.effect import effect_reached
from tme.agents.executor import CommandExecutor
from tme.agents.expect import Expect
from tme.drivers.profile import PointSpec, load_profile
from tme.errors import DriverError
from tme.protocol import Event

SPEED = PointSpec(address=0, table="input_register", type="uint16", unit="rpm")
RUNNING = PointSpec(address=0, table="discrete_input", type="bool")
FLOW = PointSpec(address=1, table="input_register", type="float32", unit="m3/h")


# --- the rule ---------------------------------------------------------------------


def test_a_number_within_the_tolerance_is_reached_and_one_outside_is_not() -> None:
    expect = Expect("actual_speed", 1200, tolerance=20, within_s=10)
    assert effect_reached(expect, 1180, SPEED) and effect_reached(expect, 1220, SPEED)
    assert not effect_reached(expect, 1179, SPEED) and not effect_reached(expect, 830, SPEED)
    assert not effect_reached(expect, None, SPEED) and not effect_reached(expect, True, SPEED)


def test_without_a_tolerance_a_number_is_matched_exactly() -> None:
    expect = Expect("actual_speed", 1200, tolerance=0, within_s=10)
    assert effect_reached(expect, 1200, SPEED) and not effect_reached(expect, 1199, SPEED)


def test_a_bool_point_is_matched_exactly() -> None:
    expect = Expect("running", True, tolerance=0, within_s=10)
    assert effect_reached(expect, True, RUNNING)
    assert not effect_reached(expect, False, RUNNING) and not effect_reached(expect, 1, RUNNING)


def test_a_float32_is_compared_within_its_own_precision_and_its_tolerance() -> None:
    exact = Expect("flow", 0.1, tolerance=0, within_s=10)
    assert effect_reached(exact, 0.10000000149011612, FLOW)  # 0.1 as a float32 holds it
    assert not effect_reached(exact, 0.1001, FLOW)
    near = Expect("flow", 12.5, tolerance=0.25, within_s=10)
    assert effect_reached(near, 12.75, FLOW) and effect_reached(near, 12.25, FLOW)
    assert not effect_reached(near, 12.76, FLOW)


# --- the agent's checks -------------------------------------------------------------


def _write(expect: Any, value: Any = 1200, point: str = "speed_setpoint") -> Any:
    return command(
        "modbus.write", device="pump1", params={"point": point, "value": value, "expect": expect}
    )


def test_the_expected_value_defaults_to_the_value_written() -> None:
    plan = check_command(_write({"point": "actual_speed", "within_s": 2}), devices(), False)
    assert plan.expect == Expect("actual_speed", 1200, 0.0, 2.0)
    assert what_it_would_do(plan) == (
        "write speed_setpoint = 1200 rpm to pump1, then wait up to 2 s for actual_speed"
        " to read 1200 rpm"
    )


@pytest.mark.parametrize(
    ("expect", "fragment"),
    [
        ({"point": "nope", "within_s": 1}, "unknown point 'nope'"),
        ({"point": "running", "within_s": 1}, "running reads true or false, not 1200"),
        ({"point": "running", "value": True, "tolerance": 1, "within_s": 1}, "no tolerance"),
        ({"point": "actual_speed", "value": True, "within_s": 1}, "reads a number, not True"),
        ({"point": "actual_speed", "value": 70000, "within_s": 1}, "never reads 70000"),
        ({"point": "actual_speed", "tolerance": -1, "within_s": 1}, "tolerance must be"),
        ({"point": "actual_speed", "within_s": 5}, r"below the command.s timeout \(5 s\), got 5"),
        ({"point": "actual_speed", "within_s": 0}, "within_s must be above 0"),
        ({"point": "actual_speed"}, "within_s must be above 0"),
        ({"point": "actual_speed", "within_s": 1, "after": 2}, "must be a mapping of point"),
        ("actual_speed", "must be a mapping of point"),
    ],
)
def test_a_bad_expect_is_refused_before_anything_is_sent(expect: Any, fragment: str) -> None:
    with pytest.raises(Refused, match=fragment):  # NoBus fails any read or write
        check_command(_write(expect), devices(), False)


# --- the wait, in the executor -----------------------------------------------------


class _Pump:
    """A pump (unit 1) and a second device (unit 2) on one bus: each read of
    actual_speed moves the speed `ramp` rpm towards the setpoint (0: it never moves)."""

    bus_key = "tcp:127.0.0.1:5030"
    request_timeout_s = 2.0  # a cut-off write could land this late

    def __init__(
        self,
        ramp: float = 600,
        fail_read: DriverError | None = None,
        failing: list[DriverError | None] | None = None,
    ) -> None:
        """`fail_read` fails every read of actual_speed; `failing`, the next reads in
        turn (None: that read answers), then they answer."""
        self.ramp, self.fail_read = ramp, fail_read
        self.failing = list(failing or [])
        self.setpoint, self.speed = 0.0, 0.0
        self.speed_reads = 0
        self.failed_reads = 0

    async def write_point(self, profile: object, unit: int, point: str, value: Any) -> None:
        self.setpoint = float(value)

    async def read_points(self, profile: object, unit: int, points: list[str]) -> dict:
        if "actual_speed" in points:
            failure = self.failing.pop(0) if self.failing else self.fail_read
            if failure is not None:
                self.failed_reads += 1
                raise failure
            self.speed_reads += 1
            step = max(-self.ramp, min(self.ramp, self.setpoint - self.speed))
            self.speed += step
        return {p: round(self.speed) if p == "actual_speed" else self.setpoint for p in points}


@pytest.fixture
def record(tmp_path: Path) -> Iterator[CommandRecord]:
    record = CommandRecord(tmp_path / "r.sqlite3")
    yield record
    record.close()


def _executor(
    record: CommandRecord, pump: _Pump, sent: list[Event] | None = None
) -> tuple[CommandExecutor, DeviceSet]:
    profile = load_profile(PUMP)
    devices = DeviceSet(
        {"pump1": Device("pump1", pump, 1, profile), "pump2": Device("pump2", pump, 2, profile)}
    )
    sink = sent.append if sent is not None else (lambda _e: None)
    # one worker: a write waiting for its effect must not hold it either
    executor = CommandExecutor(record, devices, sink, worker_count=1, allow_shell=False)
    return executor, devices


async def _run(
    record: CommandRecord, pump: _Pump, expect: dict[str, Any], sent: list[Event] | None = None
) -> Event:
    executor, _ = _executor(record, pump, sent)
    cmd = _write(expect)
    record.add(cmd)
    final = await executor.execute(cmd)
    assert final is not None
    return final


async def test_a_write_succeeds_once_its_feedback_reaches_the_value(record: CommandRecord) -> None:
    pump = _Pump(ramp=600)
    final = await _run(record, pump, {"point": "actual_speed", "tolerance": 20, "within_s": 2})
    assert final.type == "succeeded", final.reason
    assert final.result is not None
    effect = final.result["effect"]
    assert effect["value"] == 1200 and effect["expected"] == 1200 and effect["reached"]
    assert effect["tolerance"] == 20 and effect["unit"] == "rpm" and pump.speed_reads == 2
    assert 0.15 < effect["after_s"] < 1.0  # one poll after the first read
    assert final.result["written"] == 1200


async def test_a_write_whose_effect_is_not_reached_fails_as_sent(record: CommandRecord) -> None:
    pump = _Pump(ramp=0)  # the motor does not turn
    final = await _run(record, pump, {"point": "actual_speed", "tolerance": 20, "within_s": 0.3})
    assert final.type == "failed" and not final.not_started
    assert final.reason == (
        "effect not reached: actual_speed read 0 rpm after 0.3 s, expected 1200 ± 20 rpm"
    )
    assert final.result is not None and final.result["written"] == 1200
    assert final.result["effect"]["value"] == 0 and not final.result["effect"]["reached"]
    assert pump.speed_reads >= 2


NO_ANSWER = DriverError("read actual_speed: no answer within 1 s", retryable=True)


async def test_a_read_that_fails_while_waiting_is_read_again_and_the_effect_still_counts(
    record: CommandRecord,
) -> None:
    """A drive that is starting may miss a reply or two: the wait goes on, and says so."""
    sent: list[Event] = []
    pump = _Pump(ramp=600, failing=[None, NO_ANSWER, NO_ANSWER])
    expect = {"point": "actual_speed", "tolerance": 20, "within_s": 3}
    final = await _run(record, pump, expect, sent)
    assert final.type == "succeeded", final.reason
    assert final.result is not None and final.result["effect"]["reached"]
    assert final.result["effect"]["value"] == 1200 and pump.failed_reads == 2
    lines = "\n".join(e.line for e in [*sent, final] if e.line is not None).splitlines()
    assert "reading actual_speed failed: read actual_speed: no answer within 1 s;" in "\n".join(
        lines
    )
    assert "reading actual_speed answers again after 2 failed" in lines


async def test_reads_that_keep_failing_fail_the_run_as_sent_when_the_wait_is_over(
    record: CommandRecord,
) -> None:
    pump = _Pump(ramp=600, failing=[None], fail_read=NO_ANSWER)  # one read, then silence
    final = await _run(record, pump, {"point": "actual_speed", "within_s": 0.5})
    assert final.type == "failed" and not final.not_started
    assert final.reason is not None
    assert final.reason.startswith(
        "effect not confirmed: the write was sent, but reading actual_speed for its effect"
        f" failed {pump.failed_reads} times: read actual_speed: no answer within 1 s;"
        " it last read 600 rpm after 0."
    ), final.reason
    assert pump.failed_reads >= 2
    assert final.result is not None and final.result["written"] == 1200
    assert final.result["effect"]["value"] == 600 and not final.result["effect"]["reached"]


async def test_a_read_the_device_refuses_ends_the_wait_at_once(record: CommandRecord) -> None:
    """A Modbus exception saying the request is wrong: reading again cannot help."""
    refused = DriverError(
        "read actual_speed: device answered Modbus exception 2 (illegal data address)",
        modbus_exception=2,
    )
    pump = _Pump(fail_read=refused)
    final = await _run(record, pump, {"point": "actual_speed", "within_s": 3})
    assert final.type == "failed" and not final.not_started and pump.failed_reads == 1
    assert final.reason == (
        "effect not confirmed: the write was sent, but reading actual_speed for its effect"
        " failed: read actual_speed: device answered Modbus exception 2 (illegal data address)"
    )


async def test_the_bus_is_free_while_a_write_waits_and_a_stop_ends_the_wait(
    record: CommandRecord,
) -> None:
    """Another device on the same bus is read while the write waits; a stop request
    cancels the wait at once, and notes no write cut off mid-request (which would hold
    a following stop of the device for the driver's answer time)."""
    pump = _Pump(ramp=0)
    executor, devices = _executor(record, pump)
    write = _write({"point": "actual_speed", "within_s": 4}).model_copy(update={"timeout_s": 30})
    read = command("modbus.read", device="pump2", params={"point": "speed_setpoint"})
    record.add(write)
    record.add(read)
    waiting = asyncio.create_task(executor.execute(write))
    await wait_until_async(lambda: pump.speed_reads >= 1, what="the wait for the effect")
    other = await asyncio.wait_for(executor.execute(read), 1.0)
    assert other is not None and other.type == "succeeded" and not waiting.done()
    executor.request_stop(write.id, "the device was stopped")
    # the run's own stop request, which the controller sends after the device's stop,
    # arrives while the write unwinds: the device stop's reason stays
    executor.request_stop(write.id)
    waiting.cancel()
    stopped = await asyncio.wait_for(waiting, 1.0)
    assert stopped is not None and stopped.type == "canceled"
    assert stopped.reason == "stopped on request: the device was stopped"
    assert devices.devices["pump1"].cut_off_until == 0.0


async def test_the_next_change_of_the_device_waits_for_the_effect_but_reads_do_not(
    record: CommandRecord,
) -> None:
    """A second write of the same pump would move the setpoint the first one waits on:
    it goes once the first's wait is over; a read of the pump goes meanwhile."""
    pump = _Pump(ramp=0)
    executor, _ = _executor(record, pump)
    first = _write({"point": "actual_speed", "within_s": 0.5})
    second = command(
        "modbus.write", device="pump1", params={"point": "speed_setpoint", "value": 600}
    )
    read = command("modbus.read", device="pump1", params={"point": "speed_setpoint"})
    for each in (first, second, read):
        record.add(each)
    waiting = asyncio.create_task(executor.execute(first))
    await wait_until_async(lambda: pump.speed_reads >= 1, what="the wait for the effect")
    queued = asyncio.create_task(executor.execute(second))
    answer = await asyncio.wait_for(executor.execute(read), 1.0)
    # the second write came first, at the same priority: without waiting for the first
    # one's effect, it would have had the bus before the read
    assert answer is not None and answer.result is not None
    assert answer.result["values"]["speed_setpoint"]["value"] == 1200
    assert not queued.done() and pump.setpoint == 1200
    failed = await asyncio.wait_for(waiting, 2.0)
    assert failed is not None and failed.type == "failed"
    done = await asyncio.wait_for(queued, 2.0)
    assert done is not None and done.type == "succeeded" and pump.setpoint == 600
