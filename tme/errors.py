"""The one error tree of TME.

Errors carry fields, not only text, so the API, the CLI and the SDK can render
them without parsing messages. Library exceptions (pika, paho, pymodbus,
pyserial) are translated into these where they enter TME, never further in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any


class TMEError(Exception):
    """Base of every error TME raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class ConfigError(TMEError):
    """A setting is unknown, of the wrong type or out of range.

    `key` is the dotted setting name, `source` the file or variable it came from.
    """

    code = "config_error"

    def __init__(self, message: str, *, key: str = "", source: str = "") -> None:
        super().__init__(message, details={"key": key, "source": source})
        self.key = key
        self.source = source


class SchemaOutOfDate(TMEError):
    """The database schema is not at the revision this code expects."""

    code = "schema_out_of_date"


class IllegalTransition(TMEError):
    """A run was asked to move to a state its current state does not allow."""

    code = "illegal_transition"

    def __init__(self, current: str, requested: str, reason: str = "") -> None:
        current, requested = str(current), str(requested)
        message = f"a run in state {current!r} cannot move to {requested!r}"
        if reason:
            message += f": {reason}"
        super().__init__(message, details={"current": current, "requested": requested})
        self.current = current
        self.requested = requested


# --- errors an API call answers with; the SDK raises the same classes ---------


class APIError(TMEError):
    """An error the REST API answered with (or would answer with)."""

    status_code = 500
    code = "internal_error"


class BadRequest(APIError):
    status_code = 400
    code = "bad_request"


class AuthError(APIError):
    status_code = 401
    code = "unauthorized"


class Forbidden(APIError):
    status_code = 403
    code = "forbidden"


class NotFound(APIError):
    status_code = 404
    code = "not_found"


class Conflict(APIError):
    status_code = 409
    code = "conflict"


class PreconditionFailed(Conflict):
    """The task changed since the caller read it (its If-Match named an older revision)."""

    status_code = 412
    code = "precondition_failed"


class PayloadTooLarge(APIError):
    status_code = 413
    code = "payload_too_large"


class ValidationError(APIError):
    """The request was understood but its content is invalid.

    `field_errors` lists each problem as {"field": "a.b", "message": "...", "type": "..."}.
    """

    status_code = 422
    code = "validation_error"

    def __init__(self, message: str, *, field_errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, details=field_errors or [])
        self.field_errors = field_errors or []


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation(
    errors: Sequence[Mapping[str, Any]],
) -> tuple[str, list[dict[str, Any]]]:
    """Pydantic's errors (`exc.errors()`) as the API's 422 words them: the message
    ("invalid request: params.value: Field required") and the field errors."""
    fields: list[dict[str, Any]] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        kind = str(err.get("type", "value_error"))
        message = str(err.get("msg", "invalid"))
        if kind == "extra_forbidden":
            message = "unknown field"
        if kind == "bool_parsing":  # pydantic's words do not say what it takes
            message = "Input should be true or false (or 1/0, yes/no, on/off)"
        message = message.removeprefix("Value error, ")
        fields.append({"field": _field_name(loc), "message": message, "type": kind})
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    unknown = [f["field"] for f in fields if f["type"] == "extra_forbidden"]
    if unknown:
        summary = f"unknown field(s): {', '.join(unknown)}" + (
            f"; {summary}" if len(unknown) < len(fields) else ""
        )
    return f"invalid request: {summary}", fields


class Unavailable(APIError):
    status_code = 503
    code = "unavailable"


class TransportError(TMEError):
    """The TME server could not be reached (SDK side)."""

    code = "transport_error"


API_ERRORS_BY_STATUS: dict[int, type[APIError]] = {
    cls.status_code: cls
    for cls in (
        BadRequest,
        AuthError,
        Forbidden,
        NotFound,
        Conflict,
        PreconditionFailed,
        PayloadTooLarge,
        ValidationError,
        Unavailable,
    )
}


def api_error_from_response(status: int, body: Any) -> APIError:
    """Rebuild the typed error from an API error response (used by the SDK)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):  # not TME's answer: a proxy's page, another app's error
        said = _gist(body)
        message = f"HTTP {status}: {said}" if said else f"HTTP {status}"
        error = {"code": "http_error", "message": message, "details": body}
    message = str(error.get("message") or f"HTTP {status}")
    cls = API_ERRORS_BY_STATUS.get(status)
    if cls is None:
        cls = BadRequest if 400 <= status < 500 else APIError
    if cls is ValidationError:
        details = error.get("details")
        exc: APIError = ValidationError(
            message, field_errors=details if isinstance(details, list) else []
        )
    else:
        exc = cls(message, details=error.get("details"))
    exc.code = str(error.get("code") or exc.code)
    exc.status_code = status
    return exc


# --- the edge -----------------------------------------------------------------


class DriverError(TMEError):
    """A machine operation failed in its driver.

    `modbus_exception` holds the Modbus exception code when the device answered
    with one; `retryable` tells whether trying again may help (I/O errors, busy);
    `not_sent` that the call failed before any request of it left for the device (its
    connection or port could not be opened), so the machine was not touched: the agent
    then reports the command as not started, and the controller may retry a write.
    False whenever a frame may have gone out (a timeout after sending, a connection
    lost mid-request), or cannot be ruled out.
    """

    code = "driver_error"

    def __init__(
        self,
        message: str,
        *,
        modbus_exception: int | None = None,
        retryable: bool = False,
        not_sent: bool = False,
        details: Any = None,
        result: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.modbus_exception = modbus_exception
        self.retryable = retryable
        self.not_sent = not_sent
        self.result = result  # what the operation got before it failed: the run's result

    @property
    def device_answered(self) -> bool:
        """Whether the device answered (a Modbus exception, a reply that did not match):
        its link works. An error that may retry (no answer, a lost connection) or that
        sent nothing (no connection) says it does not."""
        return self.modbus_exception is not None or not (self.retryable or self.not_sent)


class EnvelopeViolation(TMEError):
    """A write fell outside the device profile's safety envelope; nothing was sent."""

    code = "envelope_violation"


class UnknownName(TMEError):
    """A registry lookup failed; the message suggests the closest known name."""

    code = "unknown_name"


class BusError(TMEError):
    """A message bus (RabbitMQ, memory, MQTT) failed to take or give a message."""

    code = "bus_error"


GIST_CHARS = 200  # of a foreign error body, in a message meant for one line


# What a page holds that is not its text: its style sheets, scripts and comments.
_NOT_TEXT = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)


def _gist(body: Any) -> str:
    """What a foreign error body says, in one short line: FastAPI's `detail`, or the
    text of a page with its tags, style sheets, scripts and runs of whitespace removed
    (a proxy's page with inline CSS was said as its CSS)."""
    if isinstance(body, dict) and "detail" in body:
        body = body["detail"]
    text = body if isinstance(body, str) else "" if body is None else str(body)
    text = " ".join(re.sub(r"<[^>]*>", " ", _NOT_TEXT.sub(" ", text)).split())
    return text[:GIST_CHARS] + ("..." if len(text) > GIST_CHARS else "")


def yaml_problem(exc: Exception) -> str:
    """A YAML parse error in one line, with where it is: 'at line 3, column 9: found
    unexpected end of stream (while parsing a flow sequence)'. PyYAML's own text runs
    over several lines, and its first line alone ('while parsing a flow sequence')
    names neither the problem nor the place."""
    mark = getattr(exc, "problem_mark", None)
    where = f"at line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    return f"{where}{problem}" + (f" ({context})" if context else "")
