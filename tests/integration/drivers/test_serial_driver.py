"""The serial driver against the simulated instrument, over socket:// and a pty."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from pathlib import Path

import pytest
from ports import free_port
from waiting import wait_until_async

from tme.drivers.profile import ArgSpec, CommandSpec, DeviceProfile, load_profile
from tme.drivers.serial import SerialDriver
from tme.drivers.serial_line import LineChannel
from tme.errors import DriverError, EnvelopeViolation
from tme.simulators.instrument import SerialInstrument

pytest_plugins = ["tme.simulators.pytest_plugin"]
PROFILE = load_profile(Path(__file__).resolve().parents[3] / "configs/profiles/instrument.yaml")


@pytest.fixture(params=["socket", "pty"])
def instrument(request: pytest.FixtureRequest) -> SerialInstrument:
    name = "instrument_sim" if request.param == "socket" else "instrument_pty_sim"
    return request.getfixturevalue(name)


async def test_command_round_trip(instrument: SerialInstrument) -> None:
    driver = SerialDriver(instrument.url, timeout_s=2.0)
    await driver.start()
    try:
        assert await driver.run_command(PROFILE, "identify", []) == "TME,SIM-PSU,0001,1.0"
        assert await driver.run_command(PROFILE, "set_voltage", [12.5]) == "OK"
        await driver.run_command(PROFILE, "output", ["ON"])
        assert await driver.query(PROFILE, "measure_voltage", []) == 12.5
        assert instrument.device.voltage_setpoint == 12.5 and instrument.device.output_on
    finally:
        await driver.stop()


async def test_refused_command_sends_nothing(instrument_sim: SerialInstrument) -> None:
    driver = SerialDriver(instrument_sim.url, timeout_s=2.0)
    await driver.start()
    try:
        with pytest.raises(EnvelopeViolation):
            await driver.run_command(PROFILE, "set_voltage", [31])
        with pytest.raises(EnvelopeViolation):
            await driver.run_command(PROFILE, "output", ["ON\nSOUR:VOLT 30"])
        assert instrument_sim.requests == []
    finally:
        await driver.stop()


async def test_device_error_reply_is_a_driver_error(instrument_sim: SerialInstrument) -> None:
    bad = dataclasses.replace(PROFILE.commands["identify"], request="FOO")
    profile = dataclasses.replace(PROFILE, commands={**PROFILE.commands, "bad": bad})
    driver = SerialDriver(instrument_sim.url, timeout_s=2.0)
    await driver.start()
    try:
        with pytest.raises(DriverError, match="ERR unknown command"):
            await driver.run_command(profile, "bad", [])
    finally:
        await driver.stop()


async def test_silent_device_times_out(instrument: SerialInstrument) -> None:
    instrument.mode = "silent"
    driver = SerialDriver(instrument.url, timeout_s=0.3)
    await driver.start()
    try:
        with pytest.raises(DriverError, match="no complete reply") as info:
            await driver.run_command(PROFILE, "identify", [])
        assert info.value.retryable
        assert not info.value.not_sent  # the request went out
        instrument.mode = "normal"
        assert await driver.run_command(PROFILE, "identify", []) == "TME,SIM-PSU,0001,1.0"
    finally:
        await driver.stop()


@pytest.mark.parametrize("where", ["socket", "path"])
async def test_a_link_that_cannot_be_opened_sends_nothing(where: str, tmp_path: Path) -> None:
    """Nothing listens on the port, or no device has the path: the request was never
    written (not_sent: the agent reports it not started, and a write may be retried)."""
    url = f"socket://127.0.0.1:{free_port()}" if where == "socket" else str(tmp_path / "tty")
    driver = SerialDriver(url, timeout_s=0.5)
    try:
        with pytest.raises(DriverError, match="cannot open serial link") as info:
            await driver.run_command(PROFILE, "set_voltage", [12.0])
        assert info.value.not_sent and info.value.retryable
    finally:
        await driver.stop()


async def test_reply_without_line_end_is_bounded(instrument: SerialInstrument) -> None:
    instrument.mode = "spew"
    driver = SerialDriver(instrument.url, timeout_s=5.0, max_line_bytes=1024)
    await driver.start()
    try:
        with pytest.raises(DriverError, match="longer than 1024 bytes") as info:
            await driver.run_command(PROFILE, "identify", [])
        assert info.value.details["bytes_discarded"] <= 2 * 1024
    finally:
        await driver.stop()


async def test_cancelled_command_keeps_the_bus_until_its_thread_ends(
    instrument: SerialInstrument,
) -> None:
    """The worker of a cancelled exchange reads until its deadline; nothing may run beside it."""
    instrument.mode = "silent"
    timeout_s = 1.0
    driver = SerialDriver(instrument.url, timeout_s=timeout_s)
    await driver.start()
    try:
        first = asyncio.create_task(driver.run_command(PROFILE, "identify", []))
        await wait_until_async(lambda: len(instrument.requests) == 1, what="the first request")
        sent_first = time.monotonic()
        first.cancel()
        instrument.mode = "normal"
        second = asyncio.create_task(driver.run_command(PROFILE, "identify", []))
        await wait_until_async(lambda: len(instrument.requests) == 2, what="the second request")
        # the first worker reads until timeout_s after its request (less a polling step here)
        assert time.monotonic() - sent_first > timeout_s - 0.3
        assert first.done() and first.cancelled()
        assert await second == "TME,SIM-PSU,0001,1.0"
    finally:
        await driver.stop()


async def test_late_reply_is_not_the_answer_to_the_next_command(
    instrument_sim: SerialInstrument,
) -> None:
    """A reply that comes after its command timed out must not be read as the reply to
    the next command (the setpoint 12.5 V must never come back as a temperature)."""
    timeout_s = 0.5
    driver = SerialDriver(instrument_sim.url, timeout_s=timeout_s)
    await driver.start()
    try:
        await driver.run_command(PROFILE, "set_voltage", [12.5])
        temperature = await driver.query(PROFILE, "measure_temperature", [])
        instrument_sim.reply_delay_s = 1.5 * timeout_s  # the setpoint's reply comes late
        with pytest.raises(DriverError, match="no complete reply"):
            await driver.run_command(PROFILE, "voltage_setpoint", [])
        instrument_sim.reply_delay_s = 0.0  # the instrument answers the next one at once
        assert await driver.query(PROFILE, "measure_temperature", []) == temperature
        assert instrument_sim.requests[-1] == "MEAS:TEMP?"
    finally:
        await driver.stop()


def _with_free_text_label(profile: DeviceProfile, voltage_max: float) -> DeviceProfile:
    """The instrument profile with a site limit on the voltage and a text command whose
    pattern lets any text of one line through: what the line cannot carry is then left
    to the link's own check (free text without a pattern refuses it before)."""
    set_voltage = PROFILE.commands["set_voltage"]
    capped = dataclasses.replace(set_voltage, args=[ArgSpec(type="float", min=0, max=voltage_max)])
    any_text = ArgSpec(type="str", pattern=".*")
    label = CommandSpec(request="DISP:TEXT {0}", access="rw", args=[any_text])
    commands = {**profile.commands, "set_voltage": capped, "label": label}
    return dataclasses.replace(profile, commands=commands)


async def test_a_parameter_holding_the_line_end_sends_nothing() -> None:
    """With ETX as the line end, a text parameter holding ETX would be two commands to
    the instrument, the second one outside the envelope (29 V on a 12 V limit)."""
    profile = _with_free_text_label(PROFILE, voltage_max=12.0)
    with SerialInstrument.run_in_thread(terminator=b"\x03") as sim:
        driver = SerialDriver(sim.url, terminator="\x03", timeout_s=1.0)
        await driver.start()
        try:
            with pytest.raises(EnvelopeViolation) as info:
                await driver.run_command(profile, "label", ["HI\x03SOUR:VOLT 29"])
            assert info.value.details["reason"] == "not_allowed"
            assert sim.requests == [] and sim.device.voltage_setpoint == 0.0
            await driver.run_command(profile, "set_voltage", [11.5])  # the line still works
            assert sim.requests == ["SOUR:VOLT 11.5"]
        finally:
            await driver.stop()


async def test_a_parameter_the_line_cannot_encode_is_refused(
    instrument_sim: SerialInstrument,
) -> None:
    """An ASCII line cannot carry "25 °C": refused as outside the envelope, not a crash."""
    profile = _with_free_text_label(PROFILE, voltage_max=30.0)
    driver = SerialDriver(instrument_sim.url, timeout_s=1.0)
    await driver.start()
    try:
        with pytest.raises(EnvelopeViolation) as info:
            await driver.run_command(profile, "label", ["25 °C"])
        assert info.value.details["reason"] == "not_allowed"
        assert instrument_sim.requests == []
    finally:
        await driver.stop()


async def test_a_request_longer_than_the_link_takes_is_refused(
    instrument_sim: SerialInstrument,
) -> None:
    """An instrument whose input buffer overflows may drop the start of a line and run
    the rest: no request longer than the link's max_line_bytes goes out."""
    profile = _with_free_text_label(PROFILE, voltage_max=30.0)
    driver = SerialDriver(instrument_sim.url, timeout_s=1.0, max_line_bytes=32)
    await driver.start()
    try:
        with pytest.raises(EnvelopeViolation) as info:
            await driver.run_command(profile, "label", ["x" * 40])
        assert info.value.details["reason"] == "too_long"
        assert instrument_sim.requests == []
        await driver.run_command(profile, "set_voltage", [11.5])  # within it: sent
        assert instrument_sim.requests == ["SOUR:VOLT 11.5"]
    finally:
        await driver.stop()


async def test_a_command_cancelled_while_the_line_settles_is_never_sent(
    instrument_sim: SerialInstrument,
) -> None:
    """After a timeout the line waits out a quiet time before the next request; a task
    cancelled (timed out) in that wait must not have its command sent afterwards."""
    driver = SerialDriver(instrument_sim.url, timeout_s=0.5)
    await driver.start()
    try:
        instrument_sim.mode = "silent"
        with pytest.raises(DriverError, match="no complete reply"):
            await driver.run_command(PROFILE, "identify", [])
        instrument_sim.mode = "normal"
        with pytest.raises(TimeoutError):  # inside the quiet time: nothing may go out
            await asyncio.wait_for(driver.run_command(PROFILE, "set_voltage", [12.0]), 0.1)
        assert await driver.query(PROFILE, "measure_voltage", []) == 0.0
        assert instrument_sim.requests == ["*IDN?", "MEAS:VOLT?"]
        assert instrument_sim.device.voltage_setpoint == 0.0
    finally:
        await driver.stop()


async def test_a_command_cancelled_while_the_link_reopens_is_never_sent(
    instrument_sim: SerialInstrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reopening a link (a serial server over TCP) can take seconds in the worker thread.
    A task cancelled meanwhile (its timeout) must not have its command sent afterwards:
    the agent has already reported it as not done."""
    driver = SerialDriver(instrument_sim.url, timeout_s=1.0)
    opening, may_open = threading.Event(), threading.Event()
    real_open = LineChannel.open

    def slow_open(channel: LineChannel) -> None:
        opening.set()
        may_open.wait(5.0)  # the link's connect, held here by the test
        real_open(channel)

    monkeypatch.setattr(LineChannel, "open", slow_open)
    task = asyncio.create_task(driver.run_command(PROFILE, "set_voltage", [12.0]))
    await wait_until_async(opening.is_set, what="the worker opening the link")
    task.cancel()
    # the link opens after the task has taken its cancellation (the loop runs callbacks
    # in order), as when the task's timeout ends while the link is still opening
    asyncio.get_running_loop().call_soon(may_open.set)
    with pytest.raises(asyncio.CancelledError):
        await task
    try:
        assert await driver.query(PROFILE, "measure_voltage", []) == 0.0  # the line still works
        assert instrument_sim.requests == ["MEAS:VOLT?"]
        assert instrument_sim.device.voltage_setpoint == 0.0
    finally:
        await driver.stop()
