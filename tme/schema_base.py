"""The bases of the API's models: what a request body may hold, what an answer shows."""

from __future__ import annotations

import re
import types
from collections.abc import Callable
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


class Input(BaseModel):
    """Base of every request body: unknown fields are refused, and so is true or false
    for a number (pydantic took `"timeout_s": true` as a timeout of 1 s, `"priority":
    true` as priority 1), and NaN or Infinity for one ("a finite number", where a NaN
    timeout was answered "should be less than or equal to 86400")."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _only_numbers(field.annotation):
                raise ValueError("Input should be a number, not true or false")
        return value


def _only_numbers(annotation: Any) -> bool:
    """Whether a field takes numbers (int or float, or None) and no bool."""
    kinds: set[Any] = set()
    pending = [annotation]
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
    return bool(kinds) and kinds <= {int, float}


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
