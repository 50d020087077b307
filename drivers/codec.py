"""Engineering values <-> Modbus registers, following a point's type, scale and word order.

The byte work is pymodbus's `convert_to/from_registers`; this module adds the
scale and the rounding, so the driver and the simulator agree on one encoding.
"""

from __future__ import annotations

from typing import Literal

from pymodbus.client.mixin import ModbusClientMixin

from tme.drivers.profile import RAW_LIMITS, PointSpec

_DT = ModbusClientMixin.DATATYPE
DATATYPES = {
    "int16": _DT.INT16,
    "uint16": _DT.UINT16,
    "int32": _DT.INT32,
    "uint32": _DT.UINT32,
    "float32": _DT.FLOAT32,
}


def to_registers(
    value: float, type_: str, word_order: Literal["big", "little"] = "big", scale: float = 1.0
) -> list[int]:
    """Encode an engineering value (already checked against the envelope) into registers."""
    raw: float = value / scale
    if type_ != "float32":
        raw = round(raw)
    return ModbusClientMixin.convert_to_registers(raw, DATATYPES[type_], word_order=word_order)


def from_registers(
    registers: list[int],
    type_: str,
    word_order: Literal["big", "little"] = "big",
    scale: float = 1.0,
) -> float | int:
    """Decode registers into an engineering value (int when the scale keeps it whole)."""
    raw = ModbusClientMixin.convert_from_registers(
        registers, DATATYPES[type_], word_order=word_order
    )
    assert isinstance(raw, int | float)
    return _scaled(raw, scale)


def _scaled(raw: float | int, scale: float) -> float | int:
    """The engineering value of a raw register value."""
    if scale == 1:
        return raw
    # 123 * 0.1 reads as 12.3, not 12.300000000000001: 15 significant digits (a double
    # holds 15 to 17) drop the product's noise but keep a small value, where rounding to
    # a number of decimals would make 5 steps of a 1e-10 scale 0, and then send 0
    return float(f"{raw * scale:.15g}")


def encode_point(spec: PointSpec, value: float) -> list[int]:
    return to_registers(value, spec.type, spec.word_order, spec.scale)


def decode_point(spec: PointSpec, registers: list[int]) -> float | int:
    return from_registers(registers, spec.type, spec.word_order, spec.scale)


def wire_value(spec: PointSpec, value: float) -> float | int:
    """What the device holds after `value` is written: rounded to what its registers carry.

    An integer register keeps whole raw steps (eng = raw * scale); a float32 keeps
    about 7 significant digits. The value must already fit the register type.

    A whole raw step that fits its integer type comes back from its registers as it
    went in, so it is scaled back here without packing them (every write checks its
    value this way twice, and its read-back once); a float32, or a step that does not
    fit (refused by the registers' packing as before), goes through the registers.
    """
    if spec.type != "float32":
        raw = round(value / spec.scale)  # as to_registers rounds it
        low, high = RAW_LIMITS[spec.type]  # what the type's registers take
        if low <= raw <= high:
            return _scaled(raw, spec.scale)
    return decode_point(spec, encode_point(spec, value))
