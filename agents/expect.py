"""A write's expected effect (a modbus.write's params.expect), checked before the
command is accepted: a refusal here (TMEError) is the command's rejection, and no
frame reaches the bus. tme.agents.effect waits for it once the write is done."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

from tme.errors import TMEError

if TYPE_CHECKING:
    from tme.agents.devices import Device
    from tme.drivers.profile import PointSpec


@dataclass(frozen=True)
class Expect:
    """A write's checked effect (params.expect): `point` of the same device reads `value`,
    give or take `tolerance`, within `within_s` seconds of the write."""

    point: str
    value: float | int | bool
    tolerance: float
    within_s: float

    def said(self, unit: str) -> str:
        """The expected value as a reason says it: "1200 ± 20 rpm", "true"."""
        if isinstance(self.value, bool):
            return str(self.value).lower()
        margin = f" ± {self.tolerance:g}" if self.tolerance else ""
        return f"{self.value:g}{margin}{f' {unit}' if unit else ''}"


EXPECT_KEYS = frozenset({"point", "value", "tolerance", "within_s"})


def expect_of(given: Any, device: Device, written: Any, timeout_s: float) -> Expect:
    """params.expect checked against the device's profile: a point it can read, a value
    of that point's type its registers can hold (the value written when none is given),
    a tolerance only for a number, and a wait that ends before the command's timeout."""
    if not isinstance(given, dict) or not EXPECT_KEYS.issuperset(given):
        raise TMEError(
            "modbus.write params.expect must be a mapping of point, value, tolerance and"
            f" within_s, got {given!r}"
        )
    point = given.get("point")
    if not isinstance(point, str):
        raise TMEError(f"params.expect.point must be a point name, got {point!r}")
    spec = device.profile.point(point)
    if not callable(getattr(device.driver, "read_points", None)):
        raise TMEError(f"device {device.name!r} cannot read {point}: params.expect needs a read")
    value = given.get("value", written)
    tolerance = given.get("tolerance", 0)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise TMEError(f"params.expect.value: {point} reads true or false, not {value!r}")
        if tolerance != 0:
            raise TMEError(f"params.expect.tolerance: {point} reads true or false: no tolerance")
    else:
        if not _finite(value):
            raise TMEError(f"params.expect.value: {point} reads a number, not {value!r}")
        _check_readable(point, spec, value)
        if not _finite(tolerance) or tolerance < 0:
            raise TMEError(f"params.expect.tolerance must be a number >= 0, got {tolerance!r}")
    within_s = given.get("within_s")
    if not _finite(within_s) or not 0 < within_s < timeout_s:
        raise TMEError(
            f"params.expect.within_s must be above 0 and below the command's timeout"
            f" ({timeout_s:g} s), got {within_s!r}"
        )
    return Expect(point, value, float(tolerance), float(within_s))


def _finite(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_readable(point: str, spec: PointSpec, value: float) -> None:
    """A value the point's registers cannot hold is never read: waiting for it would
    only fail after within_s."""
    from tme.drivers.profile import RAW_LIMITS

    low, high = (limit * spec.scale for limit in RAW_LIMITS[spec.type])
    if not min(low, high) <= value <= max(low, high):
        raise TMEError(
            f"params.expect.value: {point} ({spec.type}, scale {spec.scale:g}) never reads"
            f" {value:g}: it holds {min(low, high):g} to {max(low, high):g}"
        )
