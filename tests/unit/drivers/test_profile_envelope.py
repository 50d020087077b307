"""Device profiles: validation errors name the file and field; every envelope refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from tme.drivers.profile import load_profile, parse_profile
from tme.errors import ConfigError, EnvelopeViolation

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"


@pytest.fixture
def pump():
    return load_profile(PROFILES / "pump.yaml")


@pytest.fixture
def tank():
    return load_profile(PROFILES / "tank.yaml")


def test_example_profiles_load() -> None:
    names = {load_profile(p).name for p in PROFILES.glob("*.yaml")}
    assert {"pump", "tank", "conveyor", "instrument"} <= names


def test_validation_error_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npoints:\n  p: {address: 1, table: coil, type: float32}\n")
    with pytest.raises(ConfigError) as info:
        load_profile(bad)
    assert str(bad) in info.value.message
    assert "points.p" in info.value.message
    assert info.value.source == str(bad)


@pytest.mark.parametrize(
    "point",
    [
        {"address": -1, "table": "holding_register"},
        {"address": 0, "table": "registers"},
        {"address": 0, "table": "input_register", "access": "rw"},
        {"address": 0, "table": "holding_register", "min": 5, "max": 1},
        {"address": 0, "table": "holding_register", "scale": 0},
        {"address": 0, "table": "holding_register", "colour": "red"},
    ],
)
def test_invalid_points_are_refused(point: dict) -> None:
    with pytest.raises(ConfigError):
        parse_profile({"name": "x", "points": {"p": point}})


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(
            {
                "points": {"p": {"address": 70000, "table": "holding_register", "max": "high"}},
                "commands": {"c": {"request": "X {0}", "args": [{"type": "int", "choices": [1]}]}},
            }
        )
    for key in ("name", "points.p.address", "points.p.max", "commands.c.args.0.choices"):
        assert f"{key}: " in info.value.message, key


@pytest.mark.parametrize("limit", [float("nan"), float("inf")])
def test_a_limit_must_be_finite(limit: float) -> None:
    # a NaN maximum would compare false with every value and let any write through
    point = {"address": 0, "table": "holding_register", "access": "rw", "max": limit}
    with pytest.raises(ConfigError, match=r"points\.p\.max"):
        parse_profile({"name": "x", "points": {"p": point}})


def test_a_point_written_twice_is_refused_not_the_last_kept(tmp_path: Path) -> None:
    # PyYAML kept the second: the envelope checked was not the one the engineer read first.
    bad = tmp_path / "twice.yaml"
    bad.write_text(
        "name: pump\npoints:\n"
        "  speed: {address: 0, table: holding_register, type: uint16, access: rw, max: 1500}\n"
        "  speed: {address: 0, table: holding_register, type: uint16, access: rw, max: 3000}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_profile(bad)
    assert info.value.message == (
        f"device profile {bad} is not valid YAML at line 4, column 3: found key 'speed' twice"
        " (first at line 3): the second would replace the first (while reading a mapping)"
    )


def test_a_typo_in_a_point_key_names_the_key_meant(tmp_path: Path) -> None:
    # `acess: rw` left the point read-only, said only as "unknown field".
    bad = tmp_path / "typo.yaml"
    bad.write_text("name: x\npoints:\n  p: {address: 1, table: coil, type: bool, acess: rw}\n")
    with pytest.raises(ConfigError) as info:
        load_profile(bad)
    assert "points.p.acess: unknown field; did you mean 'access', 'address'?" in info.value.message


def test_yaml_syntax_error_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        load_profile(bad)


@pytest.mark.parametrize(
    ("point", "value", "reason"),
    [
        ("no_such_point", 1, "unknown_point"),
        ("actual_speed", 1, "read_only"),
        ("running", True, "read_only"),
        ("speed_setpoint", "fast", "wrong_type"),
        ("speed_setpoint", True, "wrong_type"),
        ("speed_setpoint", None, "wrong_type"),
        ("speed_setpoint", float("nan"), "not_finite"),
        ("speed_setpoint", float("inf"), "not_finite"),
        ("speed_setpoint", -1, "below_min"),
        ("speed_setpoint", 3000.5, "above_max"),
        ("run", 1, "wrong_type"),
    ],
)
def test_every_envelope_refusal_names_its_reason(pump, point, value, reason) -> None:
    with pytest.raises(EnvelopeViolation) as info:
        pump.check_write(point, value)
    assert info.value.details["reason"] == reason


def test_accepted_writes_return_engineering_values(pump, tank) -> None:
    assert pump.check_write("speed_setpoint", 1200) == 1200
    assert pump.check_write("run", True) is True
    assert tank.check_write("high_level_limit", 85.5) == 85.5


def test_type_range_is_checked_without_explicit_limits() -> None:
    profile = parse_profile(
        {
            "name": "x",
            "points": {
                "p": {"address": 0, "table": "holding_register", "type": "int16", "access": "rw"}
            },
        }
    )
    assert profile.check_write("p", -32768) == -32768
    with pytest.raises(EnvelopeViolation) as info:
        profile.check_write("p", 40000)
    assert info.value.details["reason"] == "out_of_type_range"


def test_command_arguments_are_checked() -> None:
    instrument = load_profile(PROFILES / "instrument.yaml")
    assert instrument.check_command("set_voltage", [12]) == [12.0]
    cases = [
        ("nope", [], "unknown_command"),
        ("set_voltage", [], "wrong_arg_count"),
        ("set_voltage", ["12"], "wrong_type"),
        ("set_voltage", [31], "above_max"),
        ("set_voltage", [-0.1], "below_min"),
        ("output", ["MAYBE"], "not_allowed"),
    ]
    for name, args, reason in cases:
        with pytest.raises(EnvelopeViolation) as info:
            instrument.check_command(name, args)
        assert info.value.details["reason"] == reason, name


def test_public_points_hide_addresses(pump) -> None:
    rows = {row["name"]: row for row in pump.public_points()}
    assert rows["speed_setpoint"] == {
        "name": "speed_setpoint",
        "kind": "point",
        "type": "uint16",
        "unit": "rpm",
        "access": "rw",
        "min": 0,
        "max": 3000,
        "safe_value": 0,  # stopping is always allowed (its interlocks are the agent's)
    }
    assert all("address" not in row for row in rows.values())


def test_public_points_give_each_command_argument_its_limits() -> None:
    """The fleet API shows what the agent enforces on a serial command's arguments."""
    instrument = load_profile(PROFILES / "instrument.yaml")
    rows = {row["name"]: row for row in instrument.public_points()}
    assert rows["set_voltage"]["args"] == [
        {"type": "float", "min": 0, "max": 30, "choices": None, "pattern": None}
    ]
    assert rows["output"]["args"] == [
        {"type": "str", "min": None, "max": None, "choices": ["ON", "OFF"], "pattern": None}
    ]
    assert rows["identify"]["args"] == []  # none, said as none (not unknown)


def test_a_refused_argument_is_named_by_its_index() -> None:
    profile = parse_profile(
        {
            "name": "two",
            "commands": {
                "range": {
                    "request": "R {0} {1}",
                    "args": [{"type": "int", "min": 1, "max": 4}, {"type": "str"}],
                }
            },
        }
    )
    with pytest.raises(EnvelopeViolation) as info:
        profile.check_command("range", [2, "a;b"])
    assert (info.value.details["reason"], info.value.details["arg"]) == ("not_allowed", 1)


SPEED = {"address": 0, "table": "holding_register", "type": "uint16", "access": "rw"}


@pytest.mark.parametrize(
    ("point", "key", "problem"),
    [
        ({**SPEED, "access": "r", "max_step": 100}, "max_step", "only a point with access 'rw'"),
        ({**SPEED, "access": "r", "safe_value": 0}, "safe_value", "only a point with access 'rw'"),
        ({**SPEED, "max_step": 0}, "max_step", "must be above 0"),
        ({**SPEED, "max_step": "fast"}, "max_step", "expected a number"),
        (
            {"address": 0, "table": "coil", "type": "bool", "access": "rw", "max_step": 1},
            "max_step",
            "a bool point has no step",
        ),
        ({**SPEED, "max": 3000, "safe_value": 3500}, "safe_value", "above the maximum 3000"),
        ({**SPEED, "safe_value": True}, "safe_value", "needs a number"),
        (
            {"address": 0, "table": "coil", "type": "bool", "access": "rw", "safe_value": 0},
            "safe_value",
            "needs true or false",
        ),
    ],
)
def test_a_step_limit_or_safe_value_that_cannot_apply_is_refused(
    point: dict, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile({"name": "x", "points": {"speed": point}})
    assert info.value.key == f"points.speed.{key}"
    assert problem in info.value.message


RUN = {"address": 0, "table": "coil", "type": "bool", "access": "rw"}


@pytest.mark.parametrize(
    ("point", "problem"),
    [
        ({**RUN, "min_interval_s": 0}, "must be above 0 and at most 86400 seconds (a day), got 0"),
        ({**RUN, "min_interval_s": -5}, "must be above 0"),
        ({**RUN, "min_interval_s": 300000}, "at most 86400 seconds (a day), got 300000"),
        ({**RUN, "min_interval_s": "5 min"}, "expected a number, got str"),
        ({**RUN, "min_interval_s": True}, "expected a number, got bool"),
        ({**RUN, "min_interval_s": float("inf")}, "must be a finite number"),
        ({**RUN, "access": "r", "min_interval_s": 300}, "only a point with access 'rw'"),
        (
            {"address": 0, "table": "discrete_input", "type": "bool", "min_interval_s": 300},
            "only a point with access 'rw'",
        ),
    ],
)
def test_a_min_interval_that_cannot_apply_is_refused(point: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile({"name": "x", "points": {"run": point}})
    assert info.value.key == "points.run.min_interval_s"
    assert problem in info.value.message
    assert "invalid device profile <memory>: points.run.min_interval_s:" in info.value.message


def test_a_min_interval_is_kept_and_published_on_a_writable_point() -> None:
    profile = parse_profile(
        {"name": "x", "points": {"run": {**RUN, "min_interval_s": 300}, "speed": SPEED}}
    )
    assert profile.points["run"].min_interval_s == 300
    assert profile.points["speed"].min_interval_s is None
    rows = {row["name"]: row for row in profile.public_points()}
    assert rows["run"]["min_interval_s"] == 300
    assert "min_interval_s" not in rows["speed"]


def test_a_change_within_the_min_interval_is_refused_saying_when_one_is_allowed() -> None:
    from tme.drivers.envelope import check_interval

    spec = parse_profile({"name": "x", "points": {"run": {**RUN, "min_interval_s": 300}}}).points[
        "run"
    ]
    with pytest.raises(EnvelopeViolation) as info:
        check_interval(spec, "run", 41.6)
    assert info.value.message == (
        "point 'run' was last changed 41 s ago; its min_interval_s is 300"
        " (next change allowed in 259 s)"
    )
    assert info.value.details["reason"] == "too_soon"
    assert info.value.details["retry_after_s"] == pytest.approx(258.4)
    with pytest.raises(EnvelopeViolation, match=r"changed 2\.3 s ago; .* allowed in 298 s"):
        check_interval(spec, "run", 2.3)
    check_interval(spec, "run", 300)  # the interval has passed: allowed
    check_interval(spec, "run", None)  # no change known


def test_the_step_limit_counts_from_the_present_value() -> None:
    from tme.drivers.envelope import check_step

    profile = parse_profile(
        {"name": "x", "points": {"speed": {**SPEED, "unit": "rpm", "max_step": 600}}}
    )
    spec = profile.points["speed"]
    check_step(spec, "speed", 1600, 1000)  # exactly the step: allowed
    check_step(spec, "speed", 400, 1000)  # down as far
    with pytest.raises(EnvelopeViolation) as info:
        check_step(spec, "speed", 1601, 1000)
    assert info.value.details["reason"] == "step_too_large"
    assert info.value.details["current"] == 1000
    with pytest.raises(EnvelopeViolation, match="not a number"):
        check_step(spec, "speed", 1000, None)  # a present value that could not be decoded


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ({"request": "X {0} {1}", "args": [{"type": "int"}]}, "takes 1 argument(s)"),
        ({"request": "X {", "args": []}, "is not a template"),
        ({"request": "X {0.real}", "args": [{"type": "float"}]}, "an argument's position"),
        ({"request": "X {0[1]}", "args": [{"type": "str"}]}, "an argument's position"),
        ({"request": "X {name}", "args": [{"type": "str"}]}, "an argument's position"),
        ({"request": "X {0:d}", "args": [{"type": "str"}]}, "cannot be filled"),
    ],
)
def test_a_request_template_its_arguments_cannot_fill_is_refused_at_load(
    command: dict, problem: str
) -> None:
    """Each of these loaded, and every run of the command was then rejected with the
    agent's 'could not check this command (IndexError ...)'."""
    with pytest.raises(ConfigError) as info:
        parse_profile({"name": "x", "commands": {"c": command}})
    assert info.value.key == "commands.c.request"
    assert problem in info.value.message


def test_a_request_template_with_literal_braces_and_formats_loads() -> None:
    profile = parse_profile(
        {
            "name": "x",
            "commands": {
                "c": {"request": "SET {{raw}} {0:.2f} {1}", "args": [{}, {"type": "str"}]}
            },
        }
    )
    assert profile.commands["c"].request.format(1.5, "ON") == "SET {raw} 1.50 ON"
