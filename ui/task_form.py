"""The task form: fields to the same TaskCreate body the API takes, with its messages."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError as SchemaError

from tme.schema_base import number_in_text
from tme.schemas import OPS, TaskCreate


class NoSchedule(Exception):
    """A time zone was given without a schedule to read in it."""


def form_body(values: dict[str, Any]) -> dict[str, Any]:
    """Turn the form's text fields into an API request body (blank fields are left out)."""
    body: dict[str, Any] = {"name": values.get("name") or "", "op": values.get("op")}
    if values.get("description"):
        body["description"] = values["description"]
    target = {k: values.get(k) for k in ("site", "agent", "device") if values.get(k)}
    if target:
        body["target"] = target
    if values.get("params"):
        body["params"] = json.loads(values["params"])
    if values.get("cmd"):
        body["cmd"] = values["cmd"]
    zone = (values.get("timezone") or "").strip()
    if values.get("cron"):
        body["schedule"] = {"cron": values["cron"], "timezone": zone or "UTC"}
    elif zone and zone != "UTC":  # as tme task create --timezone without a schedule
        raise NoSchedule("schedule.timezone: a time zone needs a schedule (cron)")
    if values.get("timeout_s"):
        # The field is text: a number typed goes as the number (the schema refuses text
        # for a number, as it does in a JSON body), anything else as typed, refused.
        typed = str(values["timeout_s"])
        number = number_in_text(typed)
        body["timeout_s"] = typed if number is None else number
    return body


def validate(values: dict[str, Any]) -> tuple[TaskCreate | None, list[str]]:
    """The task, or the problems the API would answer 422 with."""
    try:
        return TaskCreate.model_validate(form_body(values)), []
    except json.JSONDecodeError as exc:
        return None, [f"params: not JSON ({exc.msg})"]
    except NoSchedule as exc:
        return None, [str(exc)]
    except ValueError as exc:
        if isinstance(exc, SchemaError):
            return None, [
                f"{'.'.join(str(p) for p in e['loc']) or 'task'}: {_words(e['msg'])}"
                for e in exc.errors()
            ]
        return None, [str(exc)]


def _words(message: str) -> str:
    """A refusal as the API words it: pydantic puts "Value error, " before a check's own."""
    return message.removeprefix("Value error, ")


OP_CHOICES = list(OPS)
