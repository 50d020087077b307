"""Turn pydantic's validation errors into one ConfigError a person can act on.

Each problem names the dotted key, what the key expects, the value given (never
for a secret) and the file or variable it came from, e.g.
`http.port: must be an integer between 0 and 65535 (got "abc" from env TME_HTTP__PORT)`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

import pydantic
from pydantic import BaseModel, SecretStr

from tme.errors import ConfigError
from tme.settings_models import Settings

Loc = Sequence[int | str]
# dotted key -> (source, text) of each setting given by an environment variable: the error
# quotes what the operator typed (TME_HTTP__PORT=yes), not what YAML read it as (true)
EnvTexts = Mapping[str, tuple[str, str]]


def describe_validation_error(
    exc: pydantic.ValidationError, sources: Mapping[str, str], env_texts: EnvTexts | None = None
) -> ConfigError:
    """One ConfigError for all problems; its key and source are those of the first."""
    problems = [_describe(error, sources, env_texts or {}) for error in exc.errors()]
    key, source, _ = problems[0]
    return ConfigError("; ".join(text for _, _, text in problems), key=key, source=source)


def field_at(loc: Loc) -> tuple[Any, list[Any]]:
    """(annotation, constraint metadata) of the setting at `loc`; (None, []) when unknown."""
    annotation: Any = Settings
    metadata: list[Any] = []
    for part in loc:
        origin = get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None, []
            annotation, metadata = field.annotation, list(field.metadata)
        elif origin is list or origin is dict:
            annotation, metadata = get_args(annotation)[-1], []
        else:
            return None, []
    return annotation, metadata


def source_of(key: str, sources: Mapping[str, str]) -> str:
    """The source of `key`, of the nearest enclosing key (a list), or of the first key under it."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        found = sources.get(".".join(parts[:end]))
        if found:
            return found
    return next((v for k, v in sources.items() if k.startswith(key + ".")), "default")


def where(source: str) -> str:
    """'override (/p/override.yaml)' -> '/p/override.yaml'; 'env X' stays as it is."""
    if source.endswith(")") and " (" in source:
        return source[source.index(" (") + 2 : -1]
    return source


def _describe(
    error: Mapping[str, Any], sources: Mapping[str, str], env_texts: EnvTexts
) -> tuple[str, str, str]:
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        leaf = key if key in sources else next((k for k in sources if k.startswith(key + ".")), key)
        source = source_of(leaf, sources)
        return leaf, source, f'unknown setting "{leaf}" in {where(source)}{_suggestion(loc)}'
    source = source_of(key, sources)
    annotation, metadata = field_at(loc)
    if error["type"] == "missing":
        return key, source, f"{key}: is required (in {where(source)})"
    if error["type"] == "value_error":
        what = str(error["msg"]).removeprefix("Value error, ")
    else:
        what = _expectation(annotation, metadata) or str(error["msg"]).lower()
    if annotation is SecretStr:
        return key, source, f"{key}: {what} (from {where(source)})"
    given, text = env_texts.get(key, ("", ""))
    shown = _shown(text if given == source else error.get("input"))
    return key, source, f"{key}: {what} (got {shown} from {where(source)})"


def _suggestion(loc: tuple[Any, ...]) -> str:
    parent = field_at(loc[:-1])[0]
    if not (isinstance(parent, type) and issubclass(parent, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(parent.model_fields), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _expectation(annotation: Any, metadata: list[Any]) -> str | None:
    """What a key accepts, in words, from its type and its bounds."""
    if annotation is bool:
        return "must be true or false"
    if annotation in (int, float):
        noun = "an integer" if annotation is int else "a number"
        low = next((m.ge for m in metadata if hasattr(m, "ge")), None)
        high = next((m.le for m in metadata if hasattr(m, "le")), None)
        if low is not None and high is not None:
            return f"must be {noun} between {low} and {high}"
        return f"must be {noun} of at least {low}" if low is not None else f"must be {noun}"
    if get_origin(annotation) is Literal:
        return "must be one of " + ", ".join(json.dumps(choice) for choice in get_args(annotation))
    if annotation in (str, SecretStr):
        return "must be a string"
    if get_origin(annotation) is list:
        return "must be a list"
    if get_origin(annotation) is dict or (
        isinstance(annotation, type) and issubclass(annotation, BaseModel)
    ):
        return "must be a mapping"
    return None


PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:).*@")  # scheme://user:<password>@host


def hide_url_password(text: str) -> str:
    """Everything between "user:" and the last "@" of a URL as ***: a password may hold
    any character, and hiding a little more than the password is the safe mistake."""
    return PASSWORD_IN_URL.sub(r"\1***@", text)


def _shown(value: Any) -> str:
    text = hide_url_password(json.dumps(value, default=str))  # a database URL's, say
    return text if len(text) <= 60 else text[:57] + "..."
