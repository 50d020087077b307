"""TaskCreate / TaskUpdate validation: what each op needs, schedules, dependencies, limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tme.schemas import MAX_DEPENDENCIES, MAX_PARAMS_BYTES, Schedule, TaskCreate, TaskUpdate
from tme.states import RunState

SITE = {"site": "plant-1", "agent": "skid-a"}
DEVICE = {**SITE, "device": "pump1"}


def create(**fields: Any) -> TaskCreate:
    return TaskCreate.model_validate({"name": "t", **fields})


def refused(match: str, **fields: Any) -> None:
    with pytest.raises(ValidationError, match=match):
        create(**fields)


# --- ops, targets, params ---------------------------------------------------------


def test_defaults_are_an_external_task() -> None:
    task = create()
    assert task.op == "external" and task.target is None and task.params == {}
    assert task.priority == 5 and task.retries.max == 0 and task.depends_on == []


def test_external_params_are_free_form_but_bounded() -> None:
    assert create(params={"anything": [1, 2, {"x": "y"}]}).params["anything"][2] == {"x": "y"}
    refused("larger than", params={"blob": "x" * (MAX_PARAMS_BYTES + 1)})


@pytest.mark.parametrize(
    ("op", "target", "params", "cmd"),
    [
        ("noop", SITE, {}, None),
        ("sleep", SITE, {"seconds": 1.5}, None),
        ("shell", SITE, {}, "echo hi"),
        ("modbus.read", DEVICE, {"point": "tank_level"}, None),
        ("modbus.read", DEVICE, {"points": ["a", "b.c"]}, None),
        ("modbus.write", DEVICE, {"point": "speed_setpoint", "value": 1200, "verify": True}, None),
        ("serial.command", DEVICE, {"command": "READ", "args": [1, "x", 2.5]}, None),
    ],
)
def test_each_op_accepts_its_shape(
    op: str, target: dict[str, str], params: dict[str, Any], cmd: str | None
) -> None:
    task = create(op=op, target=target, params=params, cmd=cmd)
    assert task.op == op and task.target is not None and task.target.site == "plant-1"


def test_serial_args_keep_their_json_types() -> None:
    """A profile's bool argument needs true or false: a true that arrived as 1 was
    refused by the agent ("needs true or false"), so such a command could not be run."""
    args = [True, False, 1, 2.5, "ON", "1"]
    task = create(op="serial.command", target=DEVICE, params={"command": "SET", "args": args})
    kept = task.params["args"]
    assert kept == args
    assert [type(a) for a in kept] == [bool, bool, int, float, str, str]


@pytest.mark.parametrize("op", ["noop", "sleep", "shell", "modbus.read", "modbus.write"])
def test_machine_ops_need_site_and_agent(op: str) -> None:
    refused("needs a target with site and agent", op=op)
    refused("needs a target with site and agent", op=op, target={"site": "plant-1"})


@pytest.mark.parametrize("op", ["modbus.read", "modbus.write", "serial.command"])
def test_device_ops_need_a_device(op: str) -> None:
    refused("needs a target device", op=op, target=SITE)


def test_shell_needs_cmd_and_only_shell_takes_it() -> None:
    refused("needs cmd", op="shell", target=SITE)
    refused("needs cmd", op="shell", target=SITE, cmd="")
    refused("only for op 'shell'", cmd="ls")
    refused("only for op 'shell'", op="noop", target=SITE, cmd="ls")


@pytest.mark.parametrize(
    ("op", "params", "match"),
    [
        ("noop", {"x": 1}, "Extra inputs"),
        ("sleep", {}, "seconds"),
        ("sleep", {"seconds": -1}, "greater than or equal"),
        ("sleep", {"seconds": 86401}, "less than or equal"),
        ("modbus.read", {}, "exactly one of point or points"),
        ("modbus.read", {"point": "a", "points": ["b"]}, "exactly one of point or points"),
        ("modbus.read", {"points": []}, "at least 1"),
        ("modbus.read", {"point": "bad name"}, "is no point name"),
        ("modbus.read", {"point": "a/#"}, "is no point name"),
        ("modbus.write", {"point": "speed"}, "value"),
        ("modbus.write", {"value": 3}, "point"),
        ("serial.command", {"command": "X", "args": list(range(17))}, "at most 16"),
    ],
)
def test_op_params_are_checked(op: str, params: dict[str, Any], match: str) -> None:
    refused(match, op=op, target=DEVICE, params=params)


@pytest.mark.parametrize(
    ("fields", "locs"),
    [
        ({"op": "modbus.write", "params": {"point": "p"}}, [("params", "value")]),
        ({"op": "modbus.write", "params": {"point": "p", "value": 1, "x": 1}}, [("params", "x")]),
        ({"op": "modbus.write", "params": {"point": "p", "value": "fast"}}, [("params", "value")]),
        ({"op": "modbus.read", "params": {}}, [("params",)]),
        ({"op": "serial.command", "params": {"command": "C", "args": 1}}, [("params", "args")]),
        ({"op": "modbus.read", "target": None, "params": {"point": "p"}}, [("target",)]),
        ({"op": "noop", "cmd": "ls"}, [("cmd",)]),
        ({"op": "external", "params": {"v": float("nan")}}, [("params",)]),
    ],
)
def test_a_shape_error_is_located_at_its_field(
    fields: dict[str, Any], locs: list[tuple[Any, ...]]
) -> None:
    with pytest.raises(ValidationError) as caught:
        create(**{"target": DEVICE, **fields})
    assert [e["loc"] for e in caught.value.errors()] == locs


def test_a_write_value_of_no_type_is_one_message() -> None:
    with pytest.raises(ValidationError) as caught:
        create(op="modbus.write", target=DEVICE, params={"point": "p", "value": [1]})
    assert [e["msg"] for e in caught.value.errors()] == ["Input should be a number or true/false"]
    # what it takes keeps its JSON type
    for value in (1200, 2.5, True):
        task = create(op="modbus.write", target=DEVICE, params={"point": "p", "value": value})
        assert type(task.params["value"]) is type(value)


@pytest.mark.parametrize("bad", ["plant 1", "plant/1", "+", "#", "", "-lead", "x" * 65])
def test_target_names_are_topic_safe(bad: str) -> None:
    refused("site", target={"site": bad})


def test_unknown_fields_and_ops_are_refused() -> None:
    refused("Extra inputs", colour="red")
    refused("Extra inputs", target={"site": "s", "rack": "r"})
    refused("op", op="modbus.erase")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", ""),
        ("name", "x" * 201),
        ("description", "x" * 4001),
        ("cmd", "x" * 4001),
        ("timeout_s", 0),
        ("timeout_s", 86401),
        ("priority", -1),
        ("priority", 10),
        ("assigned_to", "x" * 201),
        ("retries", {"max": 21}),
        ("retries", {"backoff_s": -1}),
    ],
)
def test_bounds(field: str, value: Any) -> None:
    refused(field, **{field: value})


def test_name_is_required_and_stripped() -> None:
    with pytest.raises(ValidationError, match="name"):
        TaskCreate.model_validate({})
    assert create(name="  pump  ").name == "pump"


# --- schedules ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"},
        {"cron": "*/5 * * * *"},
        {"every_s": 30},
        {"at": "2030-01-01T06:00:00Z"},
    ],
)
def test_schedule_kinds(schedule: dict[str, Any]) -> None:
    assert create(schedule=schedule).schedule is not None


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        ({}, "exactly one of cron, every_s or at"),
        ({"timezone": "UTC"}, "exactly one of cron, every_s or at"),
        ({"cron": "* * * * *", "every_s": 5}, "exactly one of cron, every_s or at"),
        ({"every_s": 0}, "greater than or equal to 1"),
        ({"every_s": 0.5}, "greater than or equal to 1"),
        ({"every_s": 366 * 86400 + 1}, "less than or equal"),
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "not a cron"}, "invalid cron expression"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"every_s": 5, "timezone": "Nowhere/Land"}, "unknown time zone"),
        ({"every_s": 5, "timezone": "localtime"}, "controller host's"),
        ({"every_s": 5, "timezone": "right/UTC"}, "not a wall clock"),
        ({"every_s": 5, "timezone": "Factory"}, "not a wall clock"),
        ({"at": "tomorrow-ish"}, "datetime"),
    ],
)
def test_bad_schedules(schedule: dict[str, Any], match: str) -> None:
    refused(match, schedule=schedule)


@pytest.mark.parametrize(
    ("schedule", "loc", "match"),
    [
        ({"cron": "61 * * * *"}, ("schedule", "cron"), "invalid cron expression"),
        ({"cron": "0 0 30 2 *"}, ("schedule", "cron"), "never fires"),
        ({"cron": "@reboot"}, ("schedule", "cron"), "@reboot is not a time"),
        ({"cron": "@fortnightly"}, ("schedule", "cron"), "one of @yearly, @annually"),
        ({"cron": "1 2 3"}, ("schedule", "cron"), "got 3, expected 5 (minute hour"),
        ({"every_s": 5, "timezone": "Nowhere/Land"}, ("schedule", "timezone"), "unknown"),
        ({"at": "9500-01-01T00:00:00Z"}, ("schedule", "at"), "before 9000"),
        ({"cron": "* * * * *", "every_s": 5}, ("schedule",), "exactly one of"),
    ],
)
def test_a_schedule_error_is_located_at_its_field(
    schedule: dict[str, Any], loc: tuple[str, ...], match: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        create(schedule=schedule)
    [error] = caught.value.errors()
    assert error["loc"] == loc and match in error["msg"], error


@pytest.mark.parametrize("nickname", ["@hourly", "@daily", "@weekly", "@monthly", "@yearly"])
def test_cron_nicknames_are_taken(nickname: str) -> None:
    schedule = create(schedule={"cron": nickname}).schedule
    assert schedule is not None and schedule.cron == nickname


def test_schedule_defaults_to_utc() -> None:
    assert Schedule(every_s=10).timezone == "UTC"


# --- dependencies ---------------------------------------------------------------------


def test_dependencies() -> None:
    task = create(depends_on=[{"task": 3}, {"task": 4, "on": "failure"}, {"task": 5, "on": "any"}])
    assert [(d.task, d.on) for d in task.depends_on] == [(3, "success"), (4, "failure"), (5, "any")]


@pytest.mark.parametrize(
    ("deps", "match"),
    [
        ([{"task": 0}], "greater than 0"),
        ([{"task": -2}], "greater than 0"),
        ([{"task": 1, "on": "maybe"}], "on"),
        ([{"on": "success"}], "task"),
        ([{"task": i + 1} for i in range(MAX_DEPENDENCIES + 1)], "at most"),
    ],
)
def test_bad_dependencies(deps: list[dict[str, Any]], match: str) -> None:
    refused(match, depends_on=deps)


# --- updates ---------------------------------------------------------------------------


def test_update_carries_only_given_fields() -> None:
    update = TaskUpdate.model_validate({"name": "new", "priority": 2})
    assert update.field_changes == {"name": "new", "priority": 2}
    assert update.run_state is None


@pytest.mark.parametrize(
    ("word", "state"),
    [("started", RunState.running), ("complete", RunState.succeeded), ("fail", RunState.failed)],
)
def test_status_report_maps_words(word: str, state: RunState) -> None:
    update = TaskUpdate.model_validate({"status": word, "log": "line", "details": {"rc": 1}})
    assert update.run_state == state
    assert update.field_changes == {}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({}, "the update is empty"),
        ({"log": "out"}, "reported with a status"),
        ({"details": {"a": 1}}, "reported with a status"),
        ({"status": "done"}, "status"),
        ({"status": "running"}, "status"),
        ({"op": "noop"}, "Extra inputs"),
        ({"id": 3}, "Extra inputs"),
        ({"priority": 11}, "priority"),
        ({"name": ""}, "name"),
        ({"status": "fail", "details": {"x": "y" * (MAX_PARAMS_BYTES + 1)}}, "larger than"),
        ({"schedule": {"cron": "nope"}}, "invalid cron"),
        ({"depends_on": [{"task": 0}]}, "greater than 0"),
    ],
)
def test_bad_updates(body: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        TaskUpdate.model_validate(body)


def test_a_point_shows_its_step_safe_value_and_interlocks_in_its_limits() -> None:
    from tme.fleet_schemas import PointPublic

    point = PointPublic.model_validate(
        {
            "name": "speed_setpoint",
            "access": "rw",
            "min": 0,
            "max": 3000,
            "max_step": 600,
            "safe_value": 0,
            "interlocks": [
                {"device": "tank1", "point": "level", "below": 95, "why": "nearly full"},
                {"device": "pump1", "point": "fault", "equals": False, "why": ""},
            ],
        }
    )
    assert point.limits() == "0..3000, step 600, safe 0"
    assert point.needs() == "tank1.level below 95 (nearly full) and pump1.fault equals false"
    run = PointPublic.model_validate({"name": "run", "safe_value": False})
    assert run.limits() == "safe false"
    paced = PointPublic.model_validate({"name": "run", "safe_value": False, "min_interval_s": 300})
    assert paced.limits() == "safe false, min interval 300 s"
    unknown = PointPublic.model_validate({"name": "run", "min_interval_s": "5 min"})
    assert unknown.min_interval_s is None  # an agent of another version: unknown, not a 500


def test_interlocks_of_an_unknown_form_are_shown_as_such_not_dropped() -> None:
    """An agent of another version may publish them otherwise: the device is still
    shown, and that its point is guarded is not hidden."""
    from tme.fleet_schemas import PointPublic

    point = PointPublic.model_validate(
        {"name": "run", "max_step": "fast", "interlocks": [{"sensor": "tank1"}]}
    )
    assert point.max_step is None
    assert point.limits() == ""
    assert point.needs() == "?.? ? ? (interlocks in an unknown form)"
