"""Refuse a percent-encoded slash (`%2F`) in a request's path: a 4xx naming the parameter.

The server decodes the path before routing, so a slash sent inside a name reached
another route: `POST /api/v1/tasks/1%2Frun` ran task 1, `GET /api/v1/tasks%2F1` answered
task 1, `POST /api/v1/workflows/a%2Fcancel` canceled workflow run `a`, and
`GET /api/v1/devices/plant-1%2Fpump1/values` was "no such path". No id or name a path
names holds a slash, so the path is matched here as it was sent (the raw path, each
`%2F` kept inside its segment): a parameter holding one is a 422 naming it, and a path
no route has with the slash inside its segment is a 404 saying so. A path with no
`%2F` in it, nearly all of them, costs one substring search.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from fastapi.routing import iter_route_contexts
from starlette.convertors import PathConvertor
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from tme.controller.api.errors import error_response

ENCODED_SLASH = re.compile(r"%2f", re.IGNORECASE)


def slash_refusal(scope: Scope, routes: list[BaseRoute]) -> Response | None:
    """The 4xx answer to an HTTP request whose raw path holds a `%2F`, else None (a
    `{name:path}` parameter may hold one, and a mounted app, the dashboard, routes its
    own paths)."""
    raw = scope.get("raw_path")
    if scope["type"] != "http" or not raw or b"%2" not in raw:
        return None
    pieces = [unquote(piece) for piece in ENCODED_SLASH.split(raw.decode("latin-1"))]
    if len(pieces) == 1:
        return None
    stand_in = _stand_in("".join(pieces))
    as_sent = {**scope, "path": stand_in.join(pieces)}
    for route in iter_route_contexts(routes):
        match, child = route.matches(as_sent)
        if match == Match.NONE:
            continue
        params = child.get("path_params", {})
        named = [name for name, value in params.items() if stand_in in str(value)]
        convertors = getattr(route, "param_convertors", {})
        if not named or any(isinstance(convertors.get(n), PathConvertor) for n in named):
            return None  # a mount (the dashboard's) or a path parameter: theirs to route
        return _in_a_parameter({name: str(params[name]) for name in named}, stand_in)
    shown = "%2F".join(pieces)
    return error_response(
        404,
        "not_found",
        f"no such path: {shown!r} has a slash inside a segment (sent as %2F), and no path"
        " has one there (a slash between segments is sent as it is)",
        {"path": shown},
    )


def _stand_in(text: str) -> str:
    """A character of the private use area `text` does not hold: where each %2F was."""
    code = 0xE000
    while chr(code) in text:
        code += 1
    return chr(code)


def _in_a_parameter(values: dict[str, str], stand_in: str) -> Response:
    fields = [
        {
            "field": name,
            "message": f"{value.replace(stand_in, '/')!r} holds a '/' (sent as %2F):"
            " no id or name in a path has one",
            "type": "value_error",
        }
        for name, value in values.items()
    ]
    summary = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return error_response(422, "validation_error", f"invalid request: {summary}", fields)
