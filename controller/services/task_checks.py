"""Checks of a task's fields that its schema cannot make: values no database column
can hold, and a one-off schedule too late to ever run. Each refusal is a 422 naming
the field (tme.errors.ValidationError)."""

from __future__ import annotations

import json

from tme.controller.sched_triggers import ON_TIME_S
from tme.controller.store.models import utcnow
from tme.errors import ValidationError
from tme.schemas import Misfire, Schedule, TaskCreate, TaskUpdate

# Fields a PATCH may not clear with null: the columns are NOT NULL.
_REQUIRED_ON_UPDATE = ("name", "description", "priority")
_TEXT_FIELDS = ("name", "description", "cmd", "assigned_to", "log")
_JSON_FIELDS = ("params", "details")


def check_storable(data: TaskCreate | TaskUpdate) -> None:
    """Refuse, as a 422 that names the field, values no database column can hold.

    PostgreSQL text cannot hold NUL characters and its JSON cannot hold NaN or
    Infinity (which Python's JSON parser accepts); SQLite would store both, so the
    check keeps the two dialects answering alike.
    """
    errors = []
    fields_set = data.model_fields_set
    for name in _REQUIRED_ON_UPDATE:
        if isinstance(data, TaskUpdate) and name in fields_set and getattr(data, name) is None:
            errors.append(field_error(name, "may not be null"))
    for name in _TEXT_FIELDS:
        value = getattr(data, name, None)
        if isinstance(value, str) and "\x00" in value:
            errors.append(field_error(name, "may not contain NUL characters"))
    for name in _JSON_FIELDS:
        value = getattr(data, name, None)
        if value is None:
            continue
        try:
            json.dumps(value, allow_nan=False, default=str)
        except ValueError:
            errors.append(field_error(name, "numbers must be finite (no NaN or Infinity)"))
    if errors:
        problems = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise ValidationError(f"invalid request: {problems}", field_errors=errors)


def check_one_off_due(schedule: Schedule | None, misfire: Misfire) -> None:
    """Refuse a one-off `at` already past by more than the misfire grace: it would
    never run (within the grace it fires once, at once), and nothing would say so."""
    if schedule is None or schedule.at is None:
        return
    late_s = (utcnow() - schedule.at).total_seconds()
    if late_s > max(misfire.grace_s, ON_TIME_S):  # as the scheduler counts a slot late
        message = (
            f"{schedule.at.isoformat()} is {late_s:.0f} s in the past, more than the misfire "
            f"grace of {misfire.grace_s:g} s: a one-off this late would never run"
        )
        raise ValidationError(
            f"invalid request: schedule.at: {message}",
            field_errors=[field_error("schedule.at", message)],
        )


def field_error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message, "type": "value_error"}
