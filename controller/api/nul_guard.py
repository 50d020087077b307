"""Refuse a NUL character in a request's query string or path: a 422 naming the parameter.

No column holds one: PostgreSQL refuses it (answered as "a value cannot be stored",
which names nothing) and SQLite ends a LIKE pattern at it (`?q=%00` matched every
task). Checked here once for every route rather than on each string parameter. A
request with no `%00` in its query string and no NUL in its path, nearly all of them,
costs two substring searches; its body is never looked at.
"""

from __future__ import annotations

from fastapi.routing import RouteContext
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Scope

from tme.controller.api.errors import error_response
from tme.shown_text import shown

NUL = "\x00"
MESSAGE = "must not contain a NUL character"


def nul_refusal(scope: Scope, route: RouteContext | None) -> Response | None:
    """The 422 answer to an HTTP request with a NUL in its query string or path, else None."""
    if scope["type"] != "http":
        return None
    query: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    if b"%00" not in query and b"\x00" not in query and NUL not in path:
        return None
    names = _query_names(query) + (_path_names(scope, route) if NUL in path else [])
    if not names:
        return None
    fields = [{"field": name, "message": MESSAGE, "type": "value_error"} for name in names]
    summary = "; ".join(f"{name}: {MESSAGE}" for name in names[:5])
    return error_response(422, "validation_error", f"invalid request: {summary}", fields)


def _query_names(query: bytes) -> list[str]:
    """The query parameters holding a NUL, in their name or their value (decoded as
    the routes decode them)."""
    names = [key for key, value in QueryParams(query).multi_items() if NUL in key + value]
    return [_shown(name) for name in dict.fromkeys(names)]


def _path_names(scope: Scope, route: RouteContext | None) -> list[str]:
    """The path parameters holding a NUL; "path" when no route's parameter does."""
    if route is not None:
        _match, child = route.matches(scope)
        params = child.get("path_params", {})
        named = [name for name, value in params.items() if NUL in str(value)]
        if named:
            return named
    return ["path"]


def _shown(name: str) -> str:
    """A parameter's name as the answer names it: its NUL (and any other character that
    would not read as it shows) written as its escape, `\\x00`."""
    return shown(name, one_line=True) or "query"
