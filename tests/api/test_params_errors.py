"""A problem inside a task's params is named where it is (`params.value`,
`tasks.1.params.value` in a batch), on create, in a batch and on PATCH; a target or
cmd an op needs is named as `target` or `cmd`. Each was named `value`, `colour`,
`body` or `params` whatever it was about, and a write value neither number nor bool
gave three messages, one per type it might have been."""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import assert_error

DEVICE = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}
WRITE = {"name": "w", "op": "modbus.write", "target": DEVICE}
DEEP = json.loads("[" * 40 + "]" * 40)


def _named(answer: Any, message: str, *fields: str) -> None:
    error = assert_error(answer, 422)
    assert error["message"] == message, error["message"]
    assert [d["field"] for d in error["details"]] == list(fields), error["details"]


@pytest.mark.parametrize(
    ("body", "message", "field"),
    [
        (
            {**WRITE, "params": {"point": "speed"}},
            "invalid request: params.value: Field required",
            "params.value",
        ),
        (
            {**WRITE, "params": {"point": "speed", "value": 1, "colour": "red"}},
            "invalid request: unknown field(s): params.colour",
            "params.colour",
        ),
        (
            {**WRITE, "params": {"point": "speed", "value": "fast"}},
            "invalid request: params.value: Input should be a number or true/false, not text",
            "params.value",
        ),
        (
            {**WRITE, "op": "serial.command", "params": {"command": "SET", "args": 12}},
            "invalid request: params.args: Input should be a valid list",
            "params.args",
        ),
        (
            {**WRITE, "op": "serial.command", "params": {"command": "SET", "args": [{}]}},
            "invalid request: params.args.0: Input should be a number, text or true/false",
            "params.args.0",
        ),
        (
            {**WRITE, "op": "modbus.read", "params": {}},
            "invalid request: params: give exactly one of point or points",
            "params",
        ),
        (
            {"name": "x", "params": {"blob": "x" * 70_000}},
            "invalid request: params: larger than 65536 bytes as JSON",
            "params",
        ),
        (
            {"name": "x", "params": {"a": DEEP}},
            "invalid request: params: nested deeper than 32 levels",
            "params",
        ),
        (
            {**WRITE, "target": None, "params": {"point": "speed", "value": 1}},
            "invalid request: target: op 'modbus.write' needs a target with site and agent",
            "target",
        ),
        (
            {"name": "x", "cmd": "ls"},
            "invalid request: cmd: cmd is only for op 'shell'",
            "cmd",
        ),
    ],
    ids=[
        "missing",
        "unknown",
        "not-a-number",
        "args-not-a-list",
        "arg-of-no-type",
        "no-point",
        "too-large",
        "too-deep",
        "no-target",
        "cmd",
    ],
)
def test_create_names_the_field_in_params(
    test_client: Any, body: dict[str, Any], message: str, field: str
) -> None:
    _named(test_client.post("/api/v1/tasks", json=body), message, field)


def test_nan_in_params_is_named_params(test_client: Any) -> None:
    answer = test_client.post(
        "/api/v1/tasks",
        content=b'{"name": "x", "params": {"v": NaN}}',
        headers={"Content-Type": "application/json"},
    )
    _named(answer, "invalid request: params: numbers must be finite (no NaN or Infinity)", "params")


def test_a_batch_names_the_item_and_the_field_in_its_params(test_client: Any) -> None:
    body = {"tasks": [{"name": "fine"}, {**WRITE, "params": {"point": "speed"}}]}
    answer = test_client.post("/api/v1/tasks/batch", json=body)
    _named(answer, "invalid request: tasks.1.params.value: Field required", "tasks.1.params.value")


@pytest.mark.parametrize(
    ("change", "message", "field"),
    [
        (
            {"target": None},
            "invalid request: target: op 'modbus.write' needs a target with site and agent",
            "target",
        ),
        (
            {"params": {"point": "speed"}},
            "invalid request: params.value: Field required",
            "params.value",
        ),
        (
            {"params": {"point": "speed", "value": 1, "colour": "red"}},
            "invalid request: unknown field(s): params.colour",
            "params.colour",
        ),
    ],
    ids=["no-target", "missing", "unknown"],
)
def test_patch_names_the_field_as_create_does(
    test_client: Any, change: dict[str, Any], message: str, field: str
) -> None:
    made = test_client.post(
        "/api/v1/tasks", json={**WRITE, "params": {"point": "speed", "value": 1}, "trigger": "t"}
    )
    assert made.status_code == 201, made.text
    _named(test_client.patch(f"/api/v1/tasks/{made.json()['id']}", json=change), message, field)
