"""One error shape for every 4xx and 5xx: {"error": {"code", "message", "details"}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tme.controller.store.conflicts import lost_conflict
from tme.controller.store.read_only import refuses_writes
from tme.errors import APIError, IllegalTransition, describe_validation
from tme.shown_text import shown

log = logging.getLogger("tme.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if _shadows_fixed_path(request, errors):
        return _method_not_allowed(request, None)
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(
            400,
            "malformed_json",
            "the request body is not valid JSON",
            [
                {"field": "body", "message": str(e.get("msg")), "type": "json_invalid"}
                for e in errors
            ],
        )
    message, fields = describe_validation(errors)
    return error_response(422, "validation_error", message, fields)


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details)


async def _illegal(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IllegalTransition)
    return error_response(409, exc.code, exc.message, exc.details)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        # FastAPI's answer to a body it cannot decode (not UTF-8): same as malformed JSON
        return error_response(
            400, "malformed_json", "the request body is not valid JSON (or not UTF-8)"
        )
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    if exc.status_code == 404 and message == "Not Found":
        # The path named: a client given a wrong base URL (".../api/v1", ".../tme")
        # sees which path it asked for, which "no such path" alone never said.
        message = f"no such path: {_shown_path(request.url.path)}"
    headers = getattr(exc, "headers", None)
    if exc.status_code == 405:
        return _method_not_allowed(request, headers)
    details = getattr(exc, "details", None)  # BodyTooLarge's max_bytes
    return error_response(exc.status_code, code, message, details, headers)


PATH_CHARS = 200  # of a path in a one-line message


def _shown_path(path: str) -> str:
    """The path as a one-line message may quote it: what could reorder or hide the
    words around it written as escapes (tme.shown_text), and cut."""
    path = shown(path, one_line=True)
    return path[:PATH_CHARS] + ("..." if len(path) > PATH_CHARS else "")


def _method_not_allowed(request: Request, headers: dict[str, str] | None) -> JSONResponse:
    allowed = allowed_methods(request)
    message = f"method {request.method} is not allowed on this path; it takes {allowed}"
    headers = {**(headers or {}), "Allow": allowed}
    return error_response(405, _HTTP_CODES[405], message, None, headers)


def _shadows_fixed_path(request: Request, errors: list[dict[str, Any]]) -> bool:
    """Whether a path parameter failed on a path that is a fixed route for other methods:
    `PATCH /api/v1/tasks/batch` matches `/tasks/{task_id}`, but its caller meant the
    batch route, which takes POST only: a 405, not "task_id is not an integer"."""
    if not any(tuple(e.get("loc", ()))[:1] == ("path",) for e in errors):
        return False
    for route in iter_route_contexts(request.app.router.routes):
        match, _child = route.matches(request.scope)
        if match == Match.PARTIAL and _fixed(route.path):
            return True
    return False


def _fixed(path: str | None) -> bool:
    """Whether a route's path has no parameters."""
    return "{" not in (path or "")


def allowed_methods(request: Request) -> str:
    """Every method the request's path takes, for a 405's Allow header: Starlette names
    only those of the first route whose path matched, so `DELETE /api/v1/tasks` was told
    POST and not GET. Where a fixed path matched, its routes alone count."""
    fixed: set[str] = set()  # of routes without parameters: `/tasks/batch` is not a task id
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        match, _child = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(route.methods or ())
            if _fixed(route.path):
                fixed |= set(route.methods or ())
    return ", ".join(sorted(fixed or methods))


async def _integrity(_request: Request, exc: Exception) -> JSONResponse:
    log.warning("conflicting write: %s", exc)
    return error_response(409, "conflict", "the write conflicted with a concurrent one; retry")


async def _unstorable(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value validation let through (out of range, bad bytes):
    # the client's input, so a 422 and not a 500; the transaction was rolled back.
    log.warning("value refused by the database: %s", exc)
    return error_response(
        422, "validation_error", "invalid request: a value cannot be stored (out of range?)"
    )


async def _db_down(_request: Request, exc: Exception) -> JSONResponse:
    if lost_conflict(exc):
        return _lost_conflict(exc)
    # Unreachable, or read-only for now (a failover: store/read_only.py), where reads
    # still work: either way the client is to try again shortly.
    log.error("database unavailable: %s", exc)
    message = "the database is unavailable"
    if refuses_writes(exc):
        message = "the database refuses writes for now (it is read-only)"
    return error_response(503, "unavailable", message, None, {"Retry-After": "5"})


def _lost_conflict(exc: Exception) -> JSONResponse:
    # A deadlock or serialization failure still lost after the tries of
    # store/conflicts.py: the database is up, and the change was rolled back.
    log.warning("request lost a conflict with concurrent work: %s", exc)
    message = (
        "the request conflicted with concurrent work on the same rows and was rolled"
        " back; it is safe to send again"
    )
    return error_response(503, "unavailable", message, {"conflict": True}, {"Retry-After": "1"})


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; the controller log has details")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(IllegalTransition, _illegal)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(IntegrityError, _integrity)
    app.add_exception_handler(DataError, _unstorable)
    app.add_exception_handler(OperationalError, _db_down)
    app.add_exception_handler(Exception, _unexpected)
