"""A serial command cut off by its timeout while its link was still opening wrote
nothing: reported not started (the controller may retry it, a changing command too),
with a reason that says so. Cut off once its request line was written, it stays
`timed_out`: the instrument may have acted on it.

The link that never opens is socket:// to a loopback port whose accept queue is full
(listen(0) and one connection waiting): Linux drops further SYNs, so pyserial's
connect waits for its own timeout.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tme.agents.command_record import CommandRecord
from tme.agents.devices import Device, DeviceSet
from tme.agents.executor import CommandExecutor
from tme.drivers.profile import load_profile
from tme.drivers.serial import SerialDriver
from tme.protocol import Command, Event, utcnow
from tme.simulators.instrument import SerialInstrument

pytest_plugins = ["tme.simulators.pytest_plugin"]
INSTRUMENT = load_profile(Path(__file__).resolve().parents[3] / "configs/profiles/instrument.yaml")


async def _set_voltage(record: CommandRecord, driver: SerialDriver) -> Event:
    """set_voltage 12 (a changing command) through the executor, 0.3 s to run."""
    devices = DeviceSet({"meter1": Device("meter1", driver, 0, INSTRUMENT)})
    executor = CommandExecutor(record, devices, lambda _e: None, worker_count=1, allow_shell=False)
    command = Command(
        task_id=1,
        site="s",
        agent="a",
        op="serial.command",
        device="meter1",
        params={"command": "set_voltage", "args": [12]},
        timeout_s=0.3,
        not_after=utcnow() + timedelta(minutes=1),
    )
    record.add(command)
    try:
        return await executor.execute(command)
    finally:
        await driver.stop()


async def test_a_command_cut_off_while_its_link_opens_is_not_started(
    unanswered_port: int, record: CommandRecord
) -> None:
    driver = SerialDriver(f"socket://127.0.0.1:{unanswered_port}", timeout_s=5.0)
    final = await _set_voltage(record, driver)
    assert final.type == "failed" and final.not_started
    assert final.reason == (
        f"cannot connect to {driver.bus_key}: the connection could not be opened within"
        " 0.3 s (the command's timeout); nothing was sent to the device"
    )
    assert driver.requests_sent == 0


async def test_a_command_cut_off_after_its_line_was_written_timed_out(
    instrument_sim: SerialInstrument, record: CommandRecord
) -> None:
    instrument_sim.reply_delay_s = 1.0  # busy: it acts on the line, answers late
    driver = SerialDriver(instrument_sim.url, timeout_s=5.0)
    final = await _set_voltage(record, driver)
    assert final.type == "timed_out" and not final.not_started
    assert driver.requests_sent == 1
