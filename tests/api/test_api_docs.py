"""docs/api.md names every /api/v1 route the app serves, and only those.

The routes come from the app itself (its included routers walked to their full
paths), so a route added tomorrow fails here until docs/api.md documents it.
"""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from tme.controller.api.policy import route_methods, route_path

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
# `GET /api/v1/runs/<run id>` as the docs write it; `{run_id}` as the app does
DOCUMENTED = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/api/v1[^`]*)`")
PLACEHOLDER = re.compile(r"<[^>]*>|\{[^}]*\}")


def _normal(path: str) -> str:
    return PLACEHOLDER.sub("{}", path)


def _served(app: FastAPI) -> set[str]:
    return {
        f"{method} {_normal(route_path(route))}"
        for route in iter_route_contexts(app.router.routes)
        if route_path(route).startswith("/api/v1/")
        for method in route_methods(route)
    }


def _documented() -> set[str]:
    text = API_DOC.read_text(encoding="utf-8")
    return {f"{method} {_normal(path)}" for method, path in DOCUMENTED.findall(text)}


def test_every_api_v1_route_is_in_docs_api_md(app: FastAPI) -> None:
    served = _served(app)
    assert "GET /api/v1/devices/{}/values" in served  # the walk reaches included routers
    missing = sorted(served - _documented())
    assert not missing, f"routes the app serves that docs/api.md does not name: {missing}"


def test_docs_api_md_names_no_route_the_app_lacks(app: FastAPI) -> None:
    stale = sorted(_documented() - _served(app))
    assert not stale, f"routes docs/api.md names that the app does not serve: {stale}"
