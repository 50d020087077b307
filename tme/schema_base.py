"""The bases of the API's models: what a request body may hold, what an answer shows."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Callable
from functools import cache
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Input(BaseModel):
    """Base of every request body: unknown fields are refused, and so are true or false
    and text for a number (pydantic took `"timeout_s": true` as a timeout of 1 s,
    `"priority": true` as priority 1, `"value": "1200"` as a write of 1200 and `"value":
    "yes"` as true), text or a number for true or false (`"verify": "no"` was false,
    `"verify": "yes"` and `1` true), and NaN or Infinity for a number ("a finite
    number", where a NaN timeout was answered "should be less than or equal to 86400")."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _a_number_is_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool | str | int | float) and info.field_name is not None:
            takes = _takes(cls, info.field_name)
            if takes == BOOL:
                if not isinstance(value, bool):  # "yes", "false", 1 and 0 were taken
                    raise ValueError(not_a_bool(value))
            elif isinstance(value, bool) and takes == NUMBER:
                raise ValueError("Input should be a number, not true or false")
            elif isinstance(value, str) and takes is not None:
                raise ValueError(not_text(value, takes))
        return value


NUMBER = "a number"
NUMBER_OR_BOOL = "a number or true/false"
BOOL = "true or false"
# A JSON number, as text may spell one: the refusal of "1200" says to send 1200.
JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# The longest such text read as a number or quoted back in a refusal: past 4300 digits
# Python refuses to read an int at all, and a refusal is no place for a page of digits.
LONGEST_NUMBER = 32


def not_text(text: str, takes: str = NUMBER) -> str:
    """The refusal of text where a number goes: with what to send when the text spells
    it (a JSON body's quotes, or a form's field, where the type is lost)."""
    message = f"Input should be {takes}, not text"
    spelled = _spelled_number(text)
    if spelled is None and takes == NUMBER_OR_BOOL and text.strip() in ("true", "false"):
        spelled = text.strip()
    return message if spelled is None else f"{message}: send {spelled} without quotes"


def not_a_bool(value: str | int | float) -> str:
    """The refusal of text or a number where true or false goes (pydantic took "yes",
    "off", 1 and 0), with what to send when the value spells one."""
    if isinstance(value, str):
        spelled = {"true": "true", "false": "false"}.get(value.strip().lower())
        hint = f": send {spelled} without quotes" if spelled else ""
        return f"Input should be true or false, not text{hint}"
    return f"Input should be true or false, not a number ({value!r})"


def number_in_text(text: str) -> int | float | None:
    """The number `text` spells as JSON would (`"30"` -> 30, `"1.5"` -> 1.5), or None:
    for a form's field typed as text, which the models refuse as text."""
    spelled = _spelled_number(text)
    return None if spelled is None else json.loads(spelled)


def _spelled_number(text: str) -> str | None:
    spelled = text.strip()
    if len(spelled) <= LONGEST_NUMBER and JSON_NUMBER.fullmatch(spelled):
        return spelled
    return None


@cache
def _takes(model: type[BaseModel], name: str) -> str | None:
    """What a field of `model` takes when that is only numbers (NUMBER: int or float, or
    None), numbers and true/false (NUMBER_OR_BOOL: a point's value) or only true/false
    (BOOL: a write's verify); else None."""
    field = model.model_fields.get(name)
    if field is None:
        return None
    kinds: set[Any] = set()
    pending = [field.annotation]
    while pending:
        kind = pending.pop()
        origin = get_origin(kind)
        if origin is Annotated:
            pending.append(get_args(kind)[0])
        elif origin is Union or origin is types.UnionType:
            pending.extend(get_args(kind))
        else:
            kinds.add(kind)
    kinds.discard(type(None))
    if kinds == {bool}:
        return BOOL
    if not kinds & {int, float} or not kinds <= {int, float, bool}:
        return None
    return NUMBER if bool not in kinds else NUMBER_OR_BOOL


class Output(BaseModel):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


def name_check(pattern: str, problem: Callable[[str], str]) -> Callable[[str], str]:
    """An AfterValidator refusing a name that does not match `pattern` with `problem(name)`,
    words saying what such a name may hold, where pydantic's own refusal quoted the
    regular expression for the reader to decode. The JSON schema keeps the pattern
    (`WithJsonSchema(pattern_schema(pattern))` beside it)."""
    compiled = re.compile(pattern)

    def check(name: str) -> str:
        if not compiled.fullmatch(name):
            raise ValueError(problem(name))
        return name

    return check


def pattern_schema(pattern: str) -> dict[str, Any]:
    """The JSON schema of a string matching `pattern`, as StringConstraints wrote it."""
    return {"type": "string", "pattern": pattern}
