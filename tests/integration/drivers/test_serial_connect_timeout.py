"""A serial command cut off by its timeout while its link was still opening wrote
nothing: reported not started (the controller may retry it, a changing command too),
with a reason that says so. Cut off once its request line was written, it stays
`timed_out`: the instrument may have acted on it.

The link that never opens is socket:// to a loopback port whose accept queue is full
(listen(0) and one connection waiting): Linux drops further SYNs, so pyserial's
connect waits for its own timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path

from tme.agents.devices import Device
from tme.drivers.profile import load_profile
from tme.drivers.serial import SerialDriver
from tme.protocol import Event
from tme.simulators.instrument import SerialInstrument

pytest_plugins = ["tme.simulators.pytest_plugin"]
INSTRUMENT = load_profile(Path(__file__).resolve().parents[3] / "configs/profiles/instrument.yaml")


def _set_voltage(run_alone, driver: SerialDriver) -> Awaitable[Event]:
    """set_voltage 12 (a changing command) through the executor, 0.3 s to run."""
    meter = Device("meter1", driver, 0, INSTRUMENT)
    return run_alone(meter, "serial.command", {"command": "set_voltage", "args": [12]}, 0.3)


async def test_a_command_cut_off_while_its_link_opens_is_not_started(
    unanswered_port: int, run_alone
) -> None:
    driver = SerialDriver(f"socket://127.0.0.1:{unanswered_port}", timeout_s=5.0)
    final = await _set_voltage(run_alone, driver)
    assert final.type == "failed" and final.not_started
    assert final.reason == (
        f"cannot connect to {driver.bus_key}: the connection could not be opened within"
        " 0.3 s (the command's timeout); nothing was sent to the device"
    )
    assert driver.requests_sent == 0


async def test_a_command_cut_off_after_its_line_was_written_timed_out(
    instrument_sim: SerialInstrument, run_alone
) -> None:
    instrument_sim.reply_delay_s = 1.0  # busy: it acts on the line, answers late
    driver = SerialDriver(instrument_sim.url, timeout_s=5.0)
    final = await _set_voltage(run_alone, driver)
    assert final.type == "timed_out" and not final.not_started
    assert driver.requests_sent == 1
