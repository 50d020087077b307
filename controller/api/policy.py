"""What each route of the controller needs: the one table the server enforces.

Every route is declared here by method and path template (or, for a route
defined elsewhere, with `openapi_extra={"x-permission": "<permission>"}` on the
route itself). A route declared nowhere is refused for everyone, and
tests/security/test_route_matrix.py fails for it, so no route is born open.
"""

from __future__ import annotations

from fastapi.routing import RouteContext
from starlette.routing import Mount

from tme.controller.services.roles import Permission

P = Permission

POLICY: dict[tuple[str, str], Permission] = {
    # the only answers given without a token
    ("GET", "/healthz"): P.public,
    ("GET", "/readyz"): P.public,  # for orchestrators; says nothing sensitive
    ("POST", "/api/v1/auth/login"): P.public,
    # any signed-in principal
    ("GET", "/api/v1/auth/me"): P.authenticated,
    ("POST", "/api/v1/auth/logout"): P.authenticated,
    ("GET", "/openapi.json"): P.docs_read,
    ("GET", "/docs"): P.docs_read,
    ("GET", "/docs/oauth2-redirect"): P.docs_read,
    ("GET", "/redoc"): P.docs_read,
    # tasks, on the documented paths and /api/v1
    ("POST", "/tasks/create"): P.task_write,
    ("GET", "/tasks/"): P.task_read,
    ("GET", "/task/{task_id}/"): P.task_read,
    ("PUT", "/task/{task_id}/"): P.task_write,
    ("PATCH", "/task/{task_id}/"): P.task_write,
    ("GET", "/task/{task_id}"): P.task_read,
    ("PUT", "/task/{task_id}"): P.task_write,
    ("PATCH", "/task/{task_id}"): P.task_write,
    ("DELETE", "/task/{task_id}"): P.task_write,
    ("DELETE", "/task/{task_id}/"): P.task_write,
    ("POST", "/api/v1/tasks"): P.task_write,
    ("POST", "/api/v1/tasks/batch"): P.task_write,
    ("GET", "/api/v1/tasks"): P.task_read,
    ("GET", "/api/v1/tasks/{task_id}"): P.task_read,
    ("PATCH", "/api/v1/tasks/{task_id}"): P.task_write,
    ("DELETE", "/api/v1/tasks/{task_id}"): P.task_write,
    ("GET", "/api/v1/tasks/{task_id}/runs"): P.task_read,
    ("GET", "/api/v1/runs/{run_id}"): P.task_read,
    # run control
    ("POST", "/api/v1/runs/{run_id}/cancel"): P.run_control,
    ("POST", "/api/v1/tasks/{task_id}/run"): P.run_control,
    # the fleet
    ("GET", "/api/v1/sites"): P.fleet_read,
    ("GET", "/api/v1/agents"): P.fleet_read,
    ("GET", "/api/v1/devices"): P.fleet_read,
    # audit
    ("GET", "/api/v1/audit"): P.audit_read,
    ("GET", "/api/v1/audit.csv"): P.audit_read,
}

# Methods a session cookie may be used for; anything that changes state needs a
# bearer token, which another site's page cannot make a browser send.
COOKIE_METHODS = frozenset({"GET", "HEAD"})
COOKIE_PATHS = frozenset({"/api/v1/auth/logout"})


def is_mount(route: RouteContext) -> bool:
    return isinstance(route.original_route, Mount)


def route_methods(route: RouteContext) -> set[str]:
    """The methods a route answers (HEAD goes with GET); "*" for a mounted app."""
    if is_mount(route):
        return {"*"}
    return {m for m in (route.methods or {"GET"}) if m != "HEAD"}


def route_path(route: RouteContext) -> str:
    return str(route.path_format or route.path or "")


def permission_for(route: RouteContext, method: str) -> Permission | None:
    """The permission a request needs on `route`, or None when the route declared none."""
    method = "GET" if method == "HEAD" else method
    extra = getattr(route.original_route, "openapi_extra", None) or {}
    declared = extra.get("x-permission")
    if declared is not None:
        return Permission(declared)
    if is_mount(route):
        return POLICY.get(("*", route_path(route)))
    return POLICY.get((method, route_path(route)))
