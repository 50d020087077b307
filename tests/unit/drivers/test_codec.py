"""Register encoding round-trips for every type, scale and word order."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tme.drivers.codec import decode_point, encode_point, from_registers, to_registers, wire_value
from tme.drivers.profile import PointSpec

INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
}


@given(
    type_and_raw=st.sampled_from(sorted(INT_RANGES)).flatmap(
        lambda t: st.tuples(st.just(t), st.integers(*INT_RANGES[t]))
    ),
    word_order=st.sampled_from(["big", "little"]),
)
def test_integer_round_trip(type_and_raw, word_order) -> None:
    type_, raw = type_and_raw
    registers = to_registers(raw, type_, word_order)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert len(registers) == (1 if type_.endswith("16") else 2)
    assert from_registers(registers, type_, word_order) == raw


@given(st.floats(width=32, allow_nan=False), st.sampled_from(["big", "little"]))
def test_float32_round_trip(value, word_order) -> None:
    assert (
        from_registers(to_registers(value, "float32", word_order), "float32", word_order) == value
    )


@given(st.integers(-32768, 32767))
def test_scaled_int16_round_trip(raw) -> None:
    engineering = raw * 0.1
    decoded = from_registers(to_registers(engineering, "int16", scale=0.1), "int16", scale=0.1)
    assert math.isclose(decoded, engineering, abs_tol=1e-9)


def test_word_order_swaps_the_registers() -> None:
    assert to_registers(0x00010002, "uint32", "big") == [1, 2]
    assert to_registers(0x00010002, "uint32", "little") == [2, 1]


SCALES = [0.1, 0.01, 0.001, 1e-6, 1e-10, 0.3, 1 / 3, 2.5, 10.0, -0.1]


@given(
    type_and_raw=st.sampled_from(sorted(INT_RANGES)).flatmap(
        lambda t: st.tuples(st.just(t), st.integers(*INT_RANGES[t]))
    ),
    scale=st.sampled_from(SCALES),
    word_order=st.sampled_from(["big", "little"]),
)
def test_a_decoded_scaled_value_encodes_back_to_its_raw_step(
    type_and_raw, scale, word_order
) -> None:
    """What a read (or the envelope's wire value) shows is sent back as the same raw step,
    however small the scale: 5 raw steps of 1e-10 are 5e-10, never 0."""
    type_, raw = type_and_raw
    registers = to_registers(raw, type_, word_order)
    engineering = from_registers(registers, type_, word_order, scale)
    assert to_registers(engineering, type_, word_order, scale) == registers
    assert math.isclose(engineering, raw * scale, rel_tol=1e-12)


@given(
    st.one_of(st.floats(1e-30, 1e30), st.floats(-1e30, -1e-30)),
    st.sampled_from([0.1, 0.001, 1e-6]),
)
def test_a_small_scaled_float32_is_not_read_as_zero(raw, scale) -> None:
    registers = to_registers(raw * scale, "float32", scale=scale)
    decoded = from_registers(registers, "float32", scale=scale)
    assert math.isclose(decoded, raw * scale, rel_tol=2.0**-23)


@given(
    type_=st.sampled_from([*sorted(INT_RANGES), "float32"]),
    scale=st.sampled_from([1.0, 0.1, 0.5, 10.0, 0.001, 3.0]),
    value=st.one_of(
        st.integers(-(2**33), 2**33),
        st.floats(-1e10, 1e10, allow_nan=False),
        st.floats(allow_nan=False, allow_infinity=False, width=32),
    ),
    word_order=st.sampled_from(["big", "little"]),
)
def test_wire_value_is_what_the_registers_give_back(type_, scale, value, word_order) -> None:
    """Integer steps are scaled back without packing registers: the same value, of the
    same type, as decode(encode()) gives, and the same refusal when they cannot hold it."""
    spec = PointSpec(
        address=0, table="holding_register", type=type_, scale=scale, word_order=word_order
    )
    try:
        expected: object = decode_point(spec, encode_point(spec, value))
    except Exception as exc:  # the registers cannot hold it
        with pytest.raises(type(exc)):
            wire_value(spec, value)
        return
    got = wire_value(spec, value)
    assert got == expected and type(got) is type(expected)
