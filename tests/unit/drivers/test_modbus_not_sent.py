"""When a Modbus failure says that nothing was sent: only when no request of the call
reached pymodbus. A call that sent anything before (an earlier try of a read, an earlier
point) may have touched the device. Scripted clients stand in for pymodbus here: the
order of connects and requests is what is tested (the real client's refusal is tested
against real ports in tests/integration/drivers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tme.drivers.modbus import ModbusDriver
from tme.drivers.profile import load_profile
from tme.errors import DriverError

PUMP = load_profile(Path(__file__).parents[3] / "configs" / "profiles" / "pump.yaml")


class Answer:
    def __init__(self, value: int) -> None:
        self.registers = [value]

    def isError(self) -> bool:  # pymodbus's name
        return False


class Script:
    """How each connect goes, and what each request gets (an Answer, or an error
    raised); `drops_after_answer` closes the connection after each answer, as a device
    that closes idle connections does."""

    def __init__(self, connects: list[bool], answers: list[Any], drops_after_answer: bool) -> None:
        self.connects, self.answers = connects, answers
        self.drops_after_answer = drops_after_answer
        self.requests = 0

    def client(self) -> ScriptedClient:
        return ScriptedClient(self)


class ScriptedClient:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connected = False

    async def connect(self) -> bool:
        self.connected = self.script.connects.pop(0)
        return self.connected

    def close(self) -> None:
        self.connected = False

    async def read_holding_registers(self, address: int, *, count: int, device_id: int) -> Any:
        self.script.requests += 1
        answer = self.script.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        self.connected = not self.script.drops_after_answer
        return answer


def driver(script: Script, retries: int) -> ModbusDriver:
    return ModbusDriver(script.client, "tcp:scripted", 0.5, retries)  # type: ignore[arg-type]


async def test_a_read_whose_first_try_went_out_is_not_unsent_when_the_next_cannot_connect() -> None:
    script = Script([True, False], [TimeoutError()], drops_after_answer=False)
    with pytest.raises(DriverError, match="cannot connect") as info:
        await driver(script, retries=1).read_points(PUMP, 1, ["speed_setpoint"])
    assert script.requests == 1 and not info.value.not_sent


async def test_a_read_whose_earlier_point_was_read_is_not_unsent() -> None:
    script = Script([True, False], [Answer(7)], drops_after_answer=True)
    with pytest.raises(DriverError, match="cannot connect") as info:
        await driver(script, retries=0).read_points(PUMP, 1, ["speed_setpoint", "speed_setpoint"])
    assert script.requests == 1 and not info.value.not_sent


async def test_a_read_that_never_connected_is_unsent_after_every_try() -> None:
    script = Script([False, False], [], drops_after_answer=False)
    with pytest.raises(DriverError, match="cannot connect") as info:
        await driver(script, retries=1).read_points(PUMP, 1, ["speed_setpoint"])
    assert script.requests == 0 and info.value.not_sent
