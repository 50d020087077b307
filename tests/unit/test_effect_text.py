"""A write's effect said in one line (`tme run show`, the dashboard's run page)."""

from __future__ import annotations

from typing import Any

import pytest

from tme.effect_text import effect_line

SPEED = {"point": "actual_speed", "expected": 1200, "tolerance": 20.0, "unit": "rpm"}


@pytest.mark.parametrize(
    ("effect", "line"),
    [
        (
            {**SPEED, "value": 1195, "after_s": 0.84, "reached": True},
            "actual_speed reached 1195 rpm after 0.84 s (expected 1200 ± 20 rpm)",
        ),
        (
            {**SPEED, "value": 830, "after_s": 10.0, "reached": False},
            "not reached: actual_speed read 830 rpm after 10 s (expected 1200 ± 20 rpm)",
        ),
        (
            {"point": "running", "value": True, "expected": True, "tolerance": 0.0,
             "unit": "", "after_s": 0.2, "reached": True},
            "running reached true after 0.2 s (expected true)",
        ),
    ],
)  # fmt: skip
def test_an_effect_is_said_with_its_value_time_and_expectation(
    effect: dict[str, Any], line: str
) -> None:
    assert effect_line({"point": "speed_setpoint", "written": 1200, "effect": effect}) == line


@pytest.mark.parametrize("result", [None, {}, {"effect": "x"}, {"effect": {}}, ["effect"]])
def test_what_is_not_an_effect_says_nothing(result: Any) -> None:
    assert effect_line(result) is None
