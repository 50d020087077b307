"""What a stop's result says it left on the device: what it wrote, and what the device
read back after (the controller shows the device's values from it)."""

from __future__ import annotations

from test_edge_checks import PUMP, command

from tme.agents.checks import STOP_OP, Plan
from tme.agents.devices import Device
from tme.agents.operations import run_plan
from tme.drivers.profile import load_profile
from tme.errors import DriverError


class _WriteOnly:
    """A bus that takes writes and has no way to read."""

    bus_key = "tcp:127.0.0.1:5031"

    def __init__(self) -> None:
        self.written: dict[str, object] = {}

    async def write_point(self, _profile: object, _unit: int, point: str, value: object) -> None:
        self.written[point] = value


class _Unanswered(_WriteOnly):
    """Its writes are answered; a read is not."""

    async def read_points(self, *_args: object) -> dict:
        raise DriverError("no answer from unit 1 within 2 s", retryable=True)


async def _stop(driver: _WriteOnly) -> tuple[dict, list[str]]:
    lines: list[str] = []
    plan = Plan(command(STOP_OP, device="pump1"), Device("pump1", driver, 1, load_profile(PUMP)))
    return await run_plan(plan, lines.append, allow_shell=False), lines


async def test_a_stop_whose_read_back_fails_succeeds_and_says_nothing_was_read() -> None:
    result, lines = await _stop(_Unanswered())
    assert result["written"] == {"run": False, "speed_setpoint": 0}
    assert result["read_back"] == {}
    assert result["read_back_error"] == "no answer from unit 1 within 2 s"
    assert any("could not read back" in line for line in lines)


async def test_a_device_that_cannot_be_read_is_stopped_with_nothing_read_back() -> None:
    driver = _WriteOnly()
    result, _lines = await _stop(driver)
    assert driver.written == {"run": False, "speed_setpoint": 0}
    first = result.pop("first_pass")  # no write of it was cut off: no hold, no second writes
    assert result == {"stopped": "pump1", "written": driver.written, "read_back": {}}
    assert (first["written"], first["not_written"], first["hold_s"]) == (driver.written, {}, 0)
