"""Refuse a query parameter the route does not take: a 422 naming it.

An unknown parameter used to be ignored, so a typo answered as if there were no
filter: `GET /api/v1/tasks?stauts=failed` listed every task. Every /api/v1 route
now refuses a query parameter it does not declare (in its signature or its
dependencies), naming it with the close ones it does take ("did you mean"), or all
of them. Checked once for every route here, beside the NUL guard, rather than in
each route; routes outside /api/v1 (the documented seed paths, the dashboard, the
docs, /metrics) are not concerned. A request without a query string, nearly every
change, costs one test.
"""

from __future__ import annotations

from fastapi.dependencies.utils import get_validation_alias
from fastapi.routing import APIRoute, RouteContext
from starlette.datastructures import QueryParams
from starlette.responses import Response
from starlette.types import Scope

from tme.controller.api.errors import error_response
from tme.controller.api.policy import route_path
from tme.names import did_you_mean

API_PREFIX = "/api/v1/"


def unknown_query_refusal(scope: Scope, route: RouteContext | None) -> Response | None:
    """The 422 answer to a query parameter the /api/v1 route does not take, else None."""
    query: bytes = scope.get("query_string", b"")
    if not query or scope["type"] != "http" or route is None:
        return None
    endpoint = route.original_route
    if not isinstance(endpoint, APIRoute) or not route_path(route).startswith(API_PREFIX):
        return None
    if scope.get("method") not in (endpoint.methods or ()):
        return None  # another method's route matched: the 405 says so
    takes = declared_query(endpoint)
    unknown = [name for name in dict.fromkeys(QueryParams(query).keys()) if name not in takes]
    if not unknown:
        return None
    fields = [
        {"field": name, "message": _unknown(name, takes), "type": "extra_forbidden"}
        for name in unknown
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields[:5])
    return error_response(422, "validation_error", f"invalid request: {summary}", fields)


def declared_query(route: APIRoute) -> list[str]:
    """The query parameters a route takes, its dependencies' included, as sent."""
    names: list[str] = []
    dependants = [route.dependant]
    while dependants:
        dependant = dependants.pop()
        names += [get_validation_alias(field) for field in dependant.query_params]
        dependants += dependant.dependencies
    return list(dict.fromkeys(names))


def _unknown(name: str, takes: list[str]) -> str:
    hint = did_you_mean(name, takes)
    if not hint:
        hint = f"; this path takes {', '.join(takes)}" if takes else "; this path takes none"
    return f"unknown query parameter{hint}"
