"""A write's physical effect (its params.expect) in one line, as `tme run show` and the
dashboard's run page say it, from the `effect` of the run's result:

    actual_speed reached 1195 rpm after 0.84 s (expected 1200 ± 20 rpm)
    not reached: actual_speed read 0 rpm after 10.0 s (expected 1200 ± 20 rpm)

A result comes from agents of any version: what is not an effect gives None."""

from __future__ import annotations

from typing import Any


def effect_line(result: Any) -> str | None:
    effect = result.get("effect") if isinstance(result, dict) else None
    if not isinstance(effect, dict) or "point" not in effect:
        return None
    unit = str(effect.get("unit") or "")
    expected = _value(effect.get("expected"), "")
    tolerance = effect.get("tolerance")
    if isinstance(tolerance, int | float) and not isinstance(tolerance, bool) and tolerance:
        expected += f" ± {tolerance:g}"
    if unit and not isinstance(effect.get("expected"), bool):
        expected += f" {unit}"
    after = effect.get("after_s")
    when = f" after {after:g} s" if isinstance(after, int | float) else ""
    value = _value(effect.get("value"), unit)
    if effect.get("reached"):
        return f"{effect['point']} reached {value}{when} (expected {expected})"
    return f"not reached: {effect['point']} read {value}{when} (expected {expected})"


def _value(value: Any, unit: str) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value}{f' {unit}' if unit else ''}"
