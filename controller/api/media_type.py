"""Refuse a request body that says it is not JSON on a route that takes JSON: a 415.

`curl -d '{...}'` sends `Content-Type: application/x-www-form-urlencoded`, and a body
sent so used to be answered 422 "Input should be a valid dictionary", which says
nothing about what to change. The answer now names the type that was sent and the
one to send. A body with no Content-Type at all is refused the same way (FastAPI reads
such a body as no JSON at all, and answered with the same 422). Routes that take no
body, and form or file routes, are not concerned.
"""

from __future__ import annotations

from fastapi import params
from fastapi.routing import APIRoute, RouteContext
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Scope

from tme.controller.api.errors import error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def is_json(content_type: str) -> bool:
    """application/json, or a JSON-based type such as application/merge-patch+json."""
    media = content_type.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


def media_refusal(scope: Scope, route: RouteContext | None) -> Response | None:
    """The 415 answer to a body declared as another type than JSON, else None."""
    if scope["type"] != "http" or scope.get("method") not in BODY_METHODS:
        return None
    headers = Headers(scope=scope)
    content_type = headers.get("content-type")
    if content_type is None and not has_body(headers):
        return None  # nothing sent: the route's own 422 says the body is required
    if (content_type is not None and is_json(content_type)) or not _takes_json(route):
        return None
    said = f"said {content_type[:80]!r}" if content_type is not None else "declared no type"
    return error_response(
        415,
        "unsupported_media_type",
        f"the request body must be JSON: send Content-Type: application/json (this request {said})",
        {"content_type": content_type and content_type[:200], "expected": "application/json"},
    )


def has_body(headers: Headers) -> bool:
    length = headers.get("content-length", "0")
    return "transfer-encoding" in headers or not length.isdigit() or int(length) > 0


def _takes_json(route: RouteContext | None) -> bool:
    if route is None or not isinstance(route.original_route, APIRoute):
        return False
    body = route.original_route.body_field
    return body is not None and not isinstance(body.field_info, params.Form)
