"""The controller's own bounds on a task: `tasks.max_timeout_s` and `tasks.max_retries`.

The schema holds the widest bounds any controller takes (a day, 20 retries); these
settings narrow them for one installation. A task past them is refused with a 422
naming the field and the setting, on create (one or a batch) and on update.
"""

from __future__ import annotations

from typing import Any

from tme.errors import ValidationError
from tme.settings_models import TaskSettings


def check_task_limits(limits: TaskSettings, fields: Any, prefix: str = "") -> None:
    """`fields`: a TaskCreate, or an update's field changes (a dict); `prefix` names
    the item of a batch (`tasks.3.`)."""
    get = fields.get if isinstance(fields, dict) else lambda name: getattr(fields, name, None)
    problems = []
    timeout_s, retries = get("timeout_s"), get("retries")
    if timeout_s is not None and timeout_s > limits.max_timeout_s:
        problems.append(("timeout_s", f"at most {limits.max_timeout_s:g} s (tasks.max_timeout_s)"))
    if retries is not None and retries.max > limits.max_retries:
        problems.append(("retries.max", f"at most {limits.max_retries} (tasks.max_retries)"))
    if not isinstance(fields, dict):  # an update is checked once applied (check_effect_time)
        problems += _effect_time(limits, fields.op, fields.params, timeout_s)
    _refuse(problems, prefix)


def check_effect_time(limits: TaskSettings, op: str, params: Any, timeout_s: Any) -> None:
    """A write's wait for its effect (params.expect.within_s) ends before the task's
    timeout (its own, else tasks.default_timeout_s): the agent refuses any other."""
    _refuse(_effect_time(limits, op, params, timeout_s))


def _effect_time(
    limits: TaskSettings, op: str, params: Any, timeout_s: float | None
) -> list[tuple[str, str]]:
    expect = params.get("expect") if op == "modbus.write" and isinstance(params, dict) else None
    within_s = expect.get("within_s") if isinstance(expect, dict) else None
    if not isinstance(within_s, int | float):
        return []
    timeout = timeout_s if timeout_s is not None else limits.default_timeout_s
    if within_s < timeout:
        return []
    whose = "its timeout_s" if timeout_s is not None else "tasks.default_timeout_s: it has none"
    message = (
        f"must be below the task's timeout ({timeout:g} s, {whose}): the agent waits for"
        " the effect within the command's timeout"
    )
    return [("params.expect.within_s", message)]


def _refuse(problems: list[tuple[str, str]], prefix: str = "") -> None:
    if problems:
        errors = [
            {"field": prefix + field, "message": text, "type": "less_than_equal"}
            for field, text in problems
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid request: {summary}", field_errors=errors)
