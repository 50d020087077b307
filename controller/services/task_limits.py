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
    if problems:
        errors = [
            {"field": prefix + field, "message": text, "type": "less_than_equal"}
            for field, text in problems
        ]
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid request: {summary}", field_errors=errors)
