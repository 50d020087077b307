"""Every route of the app against every kind of caller, generated from app.routes.

A route added tomorrow lands in this matrix by itself: if it declares no
permission the first test fails, and its refusals are checked like the others'.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from security_helpers import SITE_A, create_task

from tme.controller.api.policy import POLICY, permission_for, route_methods, route_path
from tme.controller.services.roles import Permission, Principal, Role

# Streams never end; only their refusals are requested.
STREAMING = {"/api/v1/events"}
# Counts of every site at once: a grant of some sites is refused.
EVERY_SITE = {"/metrics"}
ROLE_OF = {
    "viewer": Principal(0, "v", Role.viewer, ("*",)),
    "operator of another site": Principal(0, "o", Role.operator, ("elsewhere",)),
    "operator": Principal(0, "o", Role.operator, (SITE_A,)),
    "engineer": Principal(0, "e", Role.engineer, ("*",)),
    "admin": Principal(0, "a", Role.admin, ("*",)),
}
OBJECT_PARAMS = ("{task_id}", "{run_id}", "{workflow_id}")


def _routes() -> list[tuple[str, str]]:
    from tme.config import Settings
    from tme.controller.app import create_app

    app = create_app(Settings(database={"url": "sqlite://"}, broker={"url": "memory://"}))
    found = set()
    for route in iter_route_contexts(app.router.routes):
        for method in route_methods(route):
            found.add((method, route_path(route)))
    return sorted(found)


ROUTES = _routes()


def _route_context(app: Any, method: str, path: str) -> Any:
    for route in iter_route_contexts(app.router.routes):
        if route_path(route) == path and method in route_methods(route):
            return route
    raise AssertionError(f"{method} {path} vanished")


def test_every_route_declares_a_permission(app) -> None:  # type: ignore[no-untyped-def]
    undeclared = [
        f"{method} {path}"
        for method, path in ROUTES
        if permission_for(_route_context(app, method, path), method) is None
    ]
    assert not undeclared, f"routes without a permission (refused for everyone): {undeclared}"


def test_every_policy_entry_names_a_served_route() -> None:
    """A stale entry would hand its permission to whatever route later takes its path."""
    served = {(method, path) for method, path in ROUTES} | {("*", path) for _m, path in ROUTES}
    stale = sorted(f"{m} {p}" for m, p in POLICY if (m, p) not in served)
    assert not stale, f"policy entries for routes the app does not serve: {stale}"


def test_only_the_probes_and_login_are_public(app) -> None:  # type: ignore[no-untyped-def]
    public = {
        f"{m} {p}"
        for m, p in ROUTES
        if permission_for(_route_context(app, m, p), m) is Permission.public
    }
    assert public == {"GET /healthz", "GET /readyz", "POST /api/v1/auth/login"}


def _concrete(path: str, task: dict[str, Any]) -> str:
    run_id = str(task["latest_run_id"])
    path = path.replace("{task_id}", str(task["id"])).replace("{workflow_id}", run_id)
    path = path.replace("{run_id}", run_id)
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_route_answers_each_caller_as_its_role_allows(
    app, anonymous, principals, admin_token, method: str, path: str
) -> None:  # type: ignore[no-untyped-def]
    needed = permission_for(_route_context(app, method, path), method)
    assert needed is not None
    admin = {"Authorization": f"Bearer {admin_token}"}
    for who, headers in principals.items():
        task = create_task(anonymous, admin)  # fresh each time: a caller may delete it
        url = _concrete(path, task)
        allowed = needed is Permission.public or (who in ROLE_OF and ROLE_OF[who].can(needed))
        if path in STREAMING and allowed:
            continue
        body = {} if method in {"POST", "PUT", "PATCH"} else None
        response = anonymous.request(method, url, json=body, headers=headers)
        status = response.status_code
        assert status < 500, f"{who}: {method} {url} -> {status} {response.text}"
        if needed is Permission.public:
            assert status not in (401, 403), f"{who}: {method} {url} -> {status}"
        elif who in ("no token", "bad token"):
            assert status == 401, f"{who}: {method} {url} -> {status}"
            assert response.headers["www-authenticate"].startswith("Bearer")
        elif not allowed or (path in EVERY_SITE and not ROLE_OF[who].all_sites):
            assert status == 403, f"{who}: {method} {url} -> {status} {response.text}"
        elif who == "operator of another site" and any(p in path for p in OBJECT_PARAMS):
            assert status == 404, f"{who}: {method} {url} -> {status} {response.text}"
        else:
            assert status not in (401, 403), f"{who}: {method} {url} -> {status} {response.text}"
