"""Property: whatever value a write is given, the simulated machine ends up holding a
value inside the envelope, or no frame is sent at all. Real TCP server, no mocks.

Each example builds one point (type, scale, word order, limits) on the conveyor's
holding registers (unit 3, address 1) or its coil, writes an arbitrary value and
looks at the machine's registers directly.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tme.agents.operations import values_match
from tme.drivers.codec import encode_point
from tme.drivers.modbus import ModbusDriver, modbus_tcp
from tme.drivers.profile import DeviceProfile, parse_profile
from tme.errors import EnvelopeViolation
from tme.simulators.modbus_plant import PlantSimulator

CONVEYOR = 3
ADDRESS = 1  # holding registers 1 and 2 of the conveyor: room for a 32-bit point
FLOAT32_EPSILON = 2.0**-23

limits = st.one_of(st.none(), st.floats(-1e6, 1e6), st.integers(-70000, 70000))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-1e6, 1e6),
    st.integers(-(2**40), 2**40),
    st.sampled_from([-0.0, 0.0, 1200.5, -1200.5, 2**31, 2**32 - 1, 10**400, -(10**400)]),
    st.sampled_from([1.7976931348623157e308, -1.7976931348623157e308, 5e-324]),
    st.booleans(),
    st.text(max_size=4),
    st.none(),
    st.lists(st.integers(), max_size=2),
)
register_points = st.fixed_dictionaries(
    {
        "address": st.just(ADDRESS),
        "table": st.just("holding_register"),
        "type": st.sampled_from(["int16", "uint16", "int32", "uint32", "float32"]),
        "scale": st.sampled_from([1, 0.1, 0.01, 0.001, 0.5, 0.3, 10, -0.1, 1e-6]),
        "word_order": st.sampled_from(["big", "little"]),
        "access": st.just("rw"),
    }
)


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantSimulator]:
    with PlantSimulator.run_in_thread(tick_s=None) as sim:
        yield sim


@pytest.fixture(scope="module")
def session(plant: PlantSimulator) -> Iterator[tuple[asyncio.AbstractEventLoop, ModbusDriver]]:
    """One loop and one driver for every example (a connection per example is slow)."""
    loop = asyncio.new_event_loop()
    driver = modbus_tcp("127.0.0.1", plant.port, timeout_s=2.0, retries=0)
    loop.run_until_complete(driver.start())
    yield loop, driver
    loop.run_until_complete(driver.stop())
    loop.close()


def _profile(point: dict[str, Any], low: float | None, high: float | None) -> DeviceProfile:
    if low is not None and high is not None and low > high:
        low, high = high, low
    limits = {k: v for k, v in (("min", low), ("max", high)) if v is not None}
    return parse_profile({"name": "prop", "points": {"p": {**point, **limits}}})


def _within(value: float, profile: DeviceProfile, tolerance: float) -> bool:
    spec = profile.points["p"]
    slack = abs(value) * tolerance
    low_ok = spec.min is None or value >= spec.min - slack
    high_ok = spec.max is None or value <= spec.max + slack
    return low_ok and high_ok


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(point=register_points, low=limits, high=limits, value=values)
def test_a_register_write_lands_inside_the_envelope_or_sends_nothing(
    plant: PlantSimulator,
    session: tuple[asyncio.AbstractEventLoop, ModbusDriver],
    point: dict[str, Any],
    low: float | None,
    high: float | None,
    value: Any,
) -> None:
    loop, driver = session
    profile = _profile(point, low, high)
    spec = profile.points["p"]
    count = spec.register_count
    plant.memory.set_registers(CONVEYOR, "holding_register", ADDRESS, [0xA5A5] * count)
    frames = plant.request_count()
    try:
        accepted = profile.check_write("p", value)
    except EnvelopeViolation:
        with pytest.raises(EnvelopeViolation):
            loop.run_until_complete(driver.write_point(profile, CONVEYOR, "p", value))
        assert plant.request_count() == frames, "a refused value reached the bus"
        held = plant.memory.get_registers(CONVEYOR, "holding_register", ADDRESS, count)
        assert held == [0xA5A5] * count
        return
    loop.run_until_complete(driver.write_point(profile, CONVEYOR, "p", value))
    held = plant.memory.get_registers(CONVEYOR, "holding_register", ADDRESS, count)
    assert held == encode_point(spec, float(accepted))
    (back,) = loop.run_until_complete(driver.read_points(profile, CONVEYOR, ["p"])).values()
    assert isinstance(back, int | float) and math.isfinite(back)
    # integer registers hold exactly a value inside the limits; a float32 to its precision
    tolerance = FLOAT32_EPSILON if spec.type == "float32" else 0.0
    assert _within(back, profile, tolerance), f"{value!r} was written as {back}"
    assert values_match(accepted, back, spec)  # verify: true passes for what was written
    if spec.type == "float32" and value != 0:
        assert math.isclose(back, value, rel_tol=FLOAT32_EPSILON), f"{value!r} became {back}"
    elif spec.type != "float32":
        assert back == accepted  # exactly the whole raw step the envelope checked


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_a_coil_takes_only_true_or_false(
    plant: PlantSimulator,
    session: tuple[asyncio.AbstractEventLoop, ModbusDriver],
    value: Any,
) -> None:
    loop, driver = session
    profile = parse_profile(
        {
            "name": "prop",
            "points": {"p": {"address": 0, "table": "coil", "type": "bool", "access": "rw"}},
        }
    )
    plant.write_bit(CONVEYOR, 0, False)
    frames = plant.request_count()
    if not isinstance(value, bool):
        with pytest.raises(EnvelopeViolation):
            loop.run_until_complete(driver.write_point(profile, CONVEYOR, "p", value))
        assert plant.request_count() == frames and plant.read_bit(CONVEYOR, 0) is False
        return
    loop.run_until_complete(driver.write_point(profile, CONVEYOR, "p", value))
    assert plant.read_bit(CONVEYOR, 0) is value
