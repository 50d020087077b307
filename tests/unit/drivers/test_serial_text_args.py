"""Text arguments of serial commands: free text holds one argument and nothing more,
a profile's `pattern` says exactly what an argument may be, and a bad one stops the
profile loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tme.drivers.envelope import FREE_TEXT_MAX_CHARS
from tme.drivers.profile import DeviceProfile, load_profile, parse_profile
from tme.drivers.serial import SerialDriver
from tme.errors import ConfigError, EnvelopeViolation


def profile_with(arg: dict[str, Any]) -> DeviceProfile:
    """A read-only query whose one argument is `arg`."""
    query = {"request": "MEAS:VOLT? {0}", "parse": "float", "args": [arg]}
    return parse_profile({"name": "meter", "commands": {"measure": query}})


FREE_TEXT = profile_with({"type": "str"})


@pytest.mark.parametrize(
    ("value", "character"),
    [
        ("AUTO;:OUTP ON", ";"),  # a second command on the same line
        ("AUTO:OUTP ON", ":"),
        ("*RST", "*"),  # a common command
        ("10,0.001", ","),  # one more parameter
        ('"x"', '"'),
        ("#15HELLO", "#"),  # block data
        ("VOLT?", "?"),
        ("A\tB", "\t"),
        ("HI\x03SOUR:VOLT 29", "\x03"),  # a control character (some links end lines so)
        ("25 °C", "°"),
    ],
)
def test_free_text_refuses_what_could_start_another_command(value: str, character: str) -> None:
    with pytest.raises(EnvelopeViolation) as info:
        FREE_TEXT.check_command("measure", [value])
    assert info.value.details["reason"] == "not_allowed"
    assert info.value.details["character"] == character
    assert "argument 0" in info.value.message and repr(character) in info.value.message


@pytest.mark.parametrize("value", ["AUTO", "10.5", "-1e+3", "CH 1", "probe_2", ""])
def test_free_text_takes_letters_digits_space_and_a_few_marks(value: str) -> None:
    assert FREE_TEXT.check_command("measure", [value]) == [value]


def test_free_text_is_bounded_in_length() -> None:
    longest = "A" * FREE_TEXT_MAX_CHARS
    assert FREE_TEXT.check_command("measure", [longest]) == [longest]
    with pytest.raises(EnvelopeViolation) as info:
        FREE_TEXT.check_command("measure", [longest + "A"])
    assert info.value.details["reason"] == "too_long"
    assert info.value.details["length"] == FREE_TEXT_MAX_CHARS + 1


def test_a_pattern_must_match_the_whole_value() -> None:
    ranges = profile_with({"type": "str", "pattern": "[0-9]{1,3}|AUTO"})
    assert ranges.check_command("measure", ["AUTO"]) == ["AUTO"]
    assert ranges.check_command("measure", ["100"]) == ["100"]
    for value in ("AUTO;*RST", "1000", "x100", "auto"):
        with pytest.raises(EnvelopeViolation) as info:
            ranges.check_command("measure", [value])
        assert info.value.details["reason"] == "not_allowed", value
        assert "pattern" in info.value.message


def test_a_pattern_replaces_the_free_text_rule() -> None:
    """The profile's author may allow more than free text, and longer text."""
    paths = profile_with({"type": "str", "pattern": "[A-Z]+(:[A-Z]+)*"})
    assert paths.check_command("measure", ["VOLT:DC"]) == ["VOLT:DC"]
    long_text = profile_with({"type": "str", "pattern": "[A-Z]{1,200}"})
    assert long_text.check_command("measure", ["A" * 200]) == ["A" * 200]


@pytest.mark.parametrize("value", ["A\nOUTP ON", "A\rOUTP ON"])
def test_no_pattern_lets_a_line_break_through(value: str) -> None:
    anything = profile_with({"type": "str", "pattern": r"[\s\S]*"})
    with pytest.raises(EnvelopeViolation) as info:
        anything.check_command("measure", [value])
    assert info.value.details["reason"] == "not_allowed"


def test_the_driver_builds_no_request_from_a_chained_argument() -> None:
    driver = SerialDriver("loop://")  # built, never opened: nothing can be sent
    assert driver.check_request(FREE_TEXT, "measure", ["AUTO"]) == "MEAS:VOLT? AUTO"
    with pytest.raises(EnvelopeViolation, match="';'"):
        driver.check_request(FREE_TEXT, "measure", ["AUTO;:OUTP ON"])


@pytest.mark.parametrize(
    ("command", "key"),
    [
        ("{request: 'MEAS:VOLT? {0}', args: [{type: str, pattern: 'AUTO|[0-9'}]}",
         "commands.measure.args.0.pattern"),
        ("{request: 'MEAS:VOLT?', parse: float, response: '([0-9.]+'}",
         "commands.measure.response"),
    ],
    ids=["argument pattern", "response pattern"],
)  # fmt: skip
def test_a_bad_regular_expression_is_a_profile_error_naming_file_and_key(
    tmp_path: Path, command: str, key: str
) -> None:
    """Refused when the profile loads, not on each run of the command."""
    bad = tmp_path / "meter.yaml"
    bad.write_text(f"name: meter\ncommands:\n  measure: {command}\n")
    with pytest.raises(ConfigError) as info:
        load_profile(bad)
    assert str(bad) in info.value.message
    assert f"{key}: " in info.value.message
    assert "regular expression" in info.value.message
    assert info.value.key == key


@pytest.mark.parametrize(
    ("arg", "problem"),
    [
        ({"type": "str", "pattern": 5}, "expected text"),
        ({"type": "float", "pattern": "[0-9]+"}, "only a 'str' argument"),
        ({"type": "str", "choices": ["ON"], "pattern": "ON|OFF"}, "not both"),
    ],
)
def test_a_pattern_that_would_not_apply_is_a_profile_error(arg: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        profile_with(arg)
    assert info.value.key == "commands.measure.args.0.pattern"


@pytest.mark.parametrize(
    ("arg", "key", "problem"),
    [
        ({"type": "int", "choices": ["1", "2"]}, "choices", "only a 'str' argument"),
        ({"type": "bool", "choices": ["ON"]}, "choices", "only a 'str' argument"),
        ({"type": "str", "max": 10}, "max", "only an 'int' or 'float' argument"),
        ({"type": "bool", "min": 0}, "min", "only an 'int' or 'float' argument"),
    ],
)
def test_a_limit_that_would_not_apply_is_a_profile_error(arg: dict, key: str, problem: str) -> None:
    """Read as a limit by whoever writes the profile, never applied by the envelope: a
    text argument with `max: 10` took any text, an int with choices any number."""
    with pytest.raises(ConfigError, match=problem) as info:
        profile_with(arg)
    assert info.value.key == f"commands.measure.args.0.{key}"
