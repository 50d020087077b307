"""The envelope checks what reaches the device, and verify compares what the registers hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tme.agents.operations import values_match
from tme.drivers.profile import DeviceProfile, load_profile, parse_profile
from tme.errors import EnvelopeViolation

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"


def one_point(**fields: Any) -> DeviceProfile:
    point = {"address": 0, "table": "holding_register", "access": "rw", **fields}
    return parse_profile({"name": "x", "points": {"p": point}})


@pytest.mark.parametrize(
    ("fields", "value", "sent"),
    [
        ({"type": "int16", "max": 10.6}, 10.6, 11),
        ({"type": "int16", "scale": 0.1, "max": 99.95}, 99.95, 100.0),
        ({"type": "int16", "scale": 0.3, "max": 100.1}, 100.1, 100.2),
    ],
)
def test_a_value_rounded_past_a_limit_is_refused(fields: dict, value: float, sent: float) -> None:
    with pytest.raises(EnvelopeViolation) as info:
        one_point(**fields).check_write("p", value)
    assert info.value.details["reason"] == "above_max"
    assert info.value.details["value"] == sent
    assert f"sent as {sent}" in info.value.message


def test_a_value_rounded_past_the_minimum_is_refused() -> None:
    with pytest.raises(EnvelopeViolation) as info:
        one_point(type="int16", scale=0.5, min=-0.8).check_write("p", -0.8)  # sent as -1.0
    assert info.value.details["reason"] == "below_min"


@pytest.mark.parametrize(
    ("fields", "value", "sent"),
    [
        ({"type": "int16", "scale": 0.1, "min": 0, "max": 100}, 100, 100.0),
        ({"type": "int16", "scale": 0.1, "min": 0, "max": 100}, 85.54, 85.5),
        ({"type": "uint16", "max": 10.6}, 10.4, 10),
        ({"type": "float32", "max": 0.1}, 0.1, 0.1),
        ({"type": "uint32", "scale": 1e-10}, 5e-10, 5e-10),  # 5 raw steps, not 0
    ],
)
def test_an_accepted_write_returns_what_the_device_receives(
    fields: dict, value: float, sent: float
) -> None:
    assert one_point(**fields).check_write("p", value) == sent


@pytest.mark.parametrize("point_type", ["int16", "uint32", "float32"])
@pytest.mark.parametrize(
    "value", [10**400, -(10**400), 10**5000], ids=["10e400", "-10e400", "10e5000"]
)
def test_an_integer_beyond_float_range_is_refused(point_type: str, value: int) -> None:
    with pytest.raises(EnvelopeViolation) as info:
        one_point(type=point_type).check_write("p", value)
    assert info.value.details["reason"] == "not_finite"


@pytest.mark.parametrize("point_type", ["int16", "uint32", "float32"])
@pytest.mark.parametrize("value", [1.7976931348623157e308, -1.7976931348623157e308])
def test_a_value_beyond_float_range_once_scaled_is_refused(point_type: str, value: float) -> None:
    """The largest double over a scale of 0.1 is infinite: refused, not an OverflowError."""
    with pytest.raises(EnvelopeViolation) as info:
        one_point(type=point_type, scale=0.1).check_write("p", value)
    assert info.value.details["reason"] == "out_of_type_range"


@pytest.mark.parametrize("value", [1e-50, -1e-50, 1e-40])
def test_a_value_a_float32_cannot_carry_is_refused(value: float) -> None:
    """1e-50 would arrive as 0.0 (below a minimum of 1e-60), 1e-40 with a few digits left."""
    limits = {"min": 1e-60} if value > 0 else {"max": -1e-60}
    with pytest.raises(EnvelopeViolation) as info:
        one_point(type="float32", **limits).check_write("p", value)
    assert info.value.details["reason"] == "out_of_type_range"


def test_a_huge_integer_command_argument_is_refused() -> None:
    instrument = load_profile(PROFILES / "instrument.yaml")
    with pytest.raises(EnvelopeViolation) as info:
        instrument.check_command("set_voltage", [10**400])
    assert info.value.details["reason"] == "not_finite"


def test_verify_compares_integers_exactly() -> None:
    batch_size = load_profile(PROFILES / "conveyor.yaml").points["batch_size"]  # uint32
    assert values_match(1_000_000, 1_000_000, batch_size)
    assert not values_match(1_000_000, 999_999, batch_size)


def test_verify_compares_scaled_integers_by_raw_step() -> None:
    limit = load_profile(PROFILES / "tank.yaml").points["high_level_limit"]  # int16, scale 0.1
    assert values_match(85.5, 85.5, limit)
    assert values_match(85.54, 85.5, limit)  # the register holds 855: 85.54 is sent as 85.5
    assert not values_match(85.5, 85.4, limit)


def test_verify_compares_float32_to_its_precision() -> None:
    max_load = load_profile(PROFILES / "conveyor.yaml").points["max_load"]  # float32
    assert values_match(250.0, 250.0, max_load)
    assert values_match(0.1, 0.10000000149011612, max_load)  # 0.1 as a float32 holds it
    assert not values_match(250.0, 250.4, max_load)
    assert not values_match(250.0, 250.0001, max_load)


def test_verify_compares_bools_as_bools() -> None:
    run = load_profile(PROFILES / "pump.yaml").points["run"]
    assert values_match(True, True, run)
    assert not values_match(True, 1, run) and not values_match(True, False, run)


@pytest.mark.parametrize("value", [2**53 + 1, -(2**60) - 3, 12345678901234567891])
def test_a_whole_number_argument_is_sent_exactly(value: int) -> None:
    """An int argument goes to the instrument as given, not rounded through a float."""
    profile = parse_profile(
        {
            "name": "counter",
            "commands": {"preset": {"request": "PRE {0}", "args": [{"type": "int"}]}},
        }
    )
    assert profile.check_command("preset", [value]) == [value]
    assert profile.check_command("preset", [7.0]) == [7]
