"""An agent's log says a device stopped answering once, not once per failed request.

pymodbus logged every unanswered request at ERROR with a dump of its last frames
("No response received after 0 retries, continue with next request" and ">>>>> send:
0x0 0x1 ...") in the agent's log, beside the driver's own line."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from tme.agents.agent_logging import setup_agent_logging
from tme.drivers.modbus import modbus_tcp
from tme.drivers.profile import load_profile
from tme.errors import DriverError
from tme.simulators.modbus_plant import PlantSimulator

pytest_plugins = ["tme.simulators.pytest_plugin"]
PUMP = 1
PROFILE = Path(__file__).resolve().parents[3] / "configs" / "profiles" / "pump.yaml"


@pytest.fixture
def agent_logging() -> Iterator[None]:
    library = logging.getLogger("pymodbus")
    level = library.level
    setup_agent_logging(verbose=False)
    yield
    library.setLevel(level)


async def test_a_device_that_stops_answering_is_logged_once(
    still_plant_sim: PlantSimulator, agent_logging: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    still_plant_sim.inject_fault(PUMP, delay_s=2.0, remaining=3)
    driver = modbus_tcp("127.0.0.1", still_plant_sim.port, timeout_s=0.3, retries=0)
    try:
        for _ in range(3):
            with pytest.raises(DriverError):
                await driver.read_points(load_profile(PROFILE), PUMP, ["speed_setpoint"])
    finally:
        await driver.stop()
    lines = [
        (r.name, r.levelname, r.getMessage())
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ]
    assert not [line for line in lines if line[0].startswith("pymodbus")], lines
    assert [line for line in lines if line[0] == "tme.drivers.modbus"] == [
        (
            "tme.drivers.modbus",
            "WARNING",
            f"modbus tcp:127.0.0.1:{still_plant_sim.port} failing: read 'speed_setpoint'"
            " (unit 1): no answer within 0.3 s",
        )
    ]
