"""pytest fixtures for the simulated machines.

Use from any test module or conftest: `pytest_plugins = ["tme.simulators.pytest_plugin"]`.
Each fixture runs its simulator on its own loop thread, so sync tests, async
tests and code on other loops can all talk to it; it stops (and joins the
thread) when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tme.simulators.instrument import SerialInstrument
from tme.simulators.modbus_plant import PlantSimulator


@pytest.fixture
def plant_sim() -> Iterator[PlantSimulator]:
    """A running plant with physics, Modbus TCP on 127.0.0.1:<sim.port>, RTU on sim.rtu_url."""
    with PlantSimulator.run_in_thread(rtu="socket://127.0.0.1:0") as sim:
        yield sim


@pytest.fixture
def still_plant_sim() -> Iterator[PlantSimulator]:
    """The plant without its physics timer: values change only when a test sets them."""
    with PlantSimulator.run_in_thread(rtu="socket://127.0.0.1:0", tick_s=None) as sim:
        yield sim


@pytest.fixture
def instrument_sim() -> Iterator[SerialInstrument]:
    """The serial instrument over TCP; connect with the URL `sim.url` (socket://...)."""
    with SerialInstrument.run_in_thread() as sim:
        yield sim


@pytest.fixture
def instrument_pty_sim() -> Iterator[SerialInstrument]:
    """The serial instrument on a pty; `sim.url` is the tty path to open."""
    with SerialInstrument.run_in_thread(pty=True) as sim:
        yield sim
