"""Refuse a request body on a route that takes none: a 422 naming what it held.

Run now, pause, resume, cancel, retry, a trigger and log out take no body: what they
need is in their path and query. A body sent to one was ignored, so a script that
sent `{"force": true}` to cancel had its run asked to stop, not marked canceled, and
one that sent `{"params": {...}}` to run now had the task run with its stored params,
both answered as done. A body of nothing, `{}` or `null` (what some clients send with
every POST) still passes; anything else is refused before the route runs, naming each
field, and a field the route takes in its query says so.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.routing import APIRoute, RouteContext
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from tme.controller.api.errors import error_response
from tme.controller.api.media_type import BODY_METHODS, has_body
from tme.controller.api.query_guard import declared_query

NOTHING = (b"", b"{}", b"null")


def takes_no_body(scope: Scope, route: RouteContext | None) -> bool:
    """Whether the request carries a body to a route of ours that takes none."""
    if scope["type"] != "http" or scope.get("method") not in BODY_METHODS or route is None:
        return False
    endpoint = route.original_route
    if not isinstance(endpoint, APIRoute) or endpoint.body_field is not None:
        return False
    if scope.get("method") not in (endpoint.methods or ()):
        return False  # another method's route matched: the 405 says so
    return has_body(Headers(scope=scope))


async def body_refusal(
    scope: Scope, receive: Receive, route: RouteContext
) -> tuple[Response | None, Receive]:
    """Read the body: the 422 answer to one that holds something, else None and a
    receive that hands the route the body as it came."""
    chunks: list[bytes] = []
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client left
            return None, _replay([message])
        chunks.append(message.get("body", b""))
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    if body.strip() in NOTHING:
        return None, _replay([{"type": "http.request", "body": body, "more_body": False}])
    assert isinstance(route.original_route, APIRoute)
    takes = declared_query(route.original_route)
    fields = [
        {"field": name, "message": _why(name, takes), "type": "extra_forbidden"}
        for name in _names(body)
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return error_response(422, "validation_error", f"invalid request: {summary}", fields), receive


def _names(body: bytes) -> list[str]:
    try:
        data: Any = json.loads(body)
    except (ValueError, RecursionError):
        return ["body"]
    if isinstance(data, dict) and data:
        return [str(key)[:64] for key in list(data)[:20]]
    return ["body"]


def _why(name: str, takes: list[str]) -> str:
    if name in takes:
        return f"this path takes no body: send it in the query (?{name}=...)"
    return "this path takes no body" + (f" (its query takes {', '.join(takes)})" if takes else "")


def _replay(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    return receive
