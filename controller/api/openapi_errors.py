"""The OpenAPI document says which errors each operation can answer, in TME's one shape.

FastAPI documents only a 422, with its own `{"detail": [...]}` schema, which TME never
sends: every error is `{"error": {"code", "message", "details"}}` (api/errors.py). A
client generated from the document was typed for the wrong body and knew of no 401,
403, 404 or 409. Each operation now lists the errors its kind can give, all as
ErrorResponse:

    400, 413, 415   it takes a body (malformed JSON, too large, not JSON)
    401, 403        it needs credentials (every route but the public ones)
    404             its path names something (a task, a run, a rule)
    409             it changes something (a conflict or a transition refused), signed in
    422             it takes parameters or a body, or is under /api/v1 (which refuses
                    a query parameter it does not take)
    503             it reads the database (every route but GET /healthz), or declares it
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import iter_route_contexts

from tme.controller.api.policy import permission_for, route_methods, route_path
from tme.controller.api.query_guard import API_PREFIX
from tme.controller.services.roles import Permission
from tme.schemas import ErrorResponse

ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
CHANGES = frozenset({"post", "put", "patch", "delete"})
DESCRIPTIONS = {
    "400": "The body is not valid JSON",
    "401": "No credentials, or credentials not accepted",
    "403": "The role or the site grant does not allow this",
    "404": "No such object, or not one of the caller's sites",
    "409": "Conflicts with the object's state or a concurrent change",
    "413": "The body is larger than http.max_body_bytes",
    "415": "The body is not JSON",
    "422": "A parameter or a field of the body is invalid; details name each",
    "503": (
        "The database is unavailable, or the change kept conflicting with concurrent work;"
        " retry after Retry-After seconds"
    ),
}
FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")


def document_errors(app: FastAPI) -> None:
    """Make app.openapi() describe TME's error answers (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            with_errors(schema, _public_operations(app))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_errors(schema: dict[str, Any], public: set[tuple[str, str]]) -> None:
    """Add the error answers to every operation of `schema`, in place."""
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = _statuses(path, method, operation, (method, path) in public)
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses[status] = _error(status)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in FASTAPI_VALIDATION:
        components.pop(name, None)
    if "ErrorResponse" not in components:
        error = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error.pop("$defs", {}))
        components["ErrorResponse"] = error


def _statuses(path: str, method: str, operation: dict[str, Any], public: bool) -> list[str]:
    # /healthz reads nothing; /readyz answers 503 by design
    declared = "503" in operation.get("responses", {})
    statuses = [] if public and method == "get" and not declared else ["503"]
    takes_body = "requestBody" in operation
    if takes_body:
        statuses += ["400", "413", "415"]
    refuses_query = path.startswith(API_PREFIX)  # an unknown query parameter: query_guard
    declares_422 = "422" in operation.get("responses", {})
    if takes_body or refuses_query or operation.get("parameters") or declares_422:
        statuses.append("422")
    if not public:
        statuses += ["401", "403"]
    if "{" in path:
        statuses.append("404")
    if method in CHANGES and not public:
        statuses.append("409")
    return sorted(statuses)


def _error(status: str) -> dict[str, Any]:
    return {
        "description": DESCRIPTIONS[status],
        "content": {"application/json": {"schema": ERROR_REF}},
    }


def _public_operations(app: FastAPI) -> set[tuple[str, str]]:
    return {
        (method.lower(), route_path(route))
        for route in iter_route_contexts(app.router.routes)
        for method in route_methods(route)
        if permission_for(route, method) is Permission.public
    }
