"""Mount the dashboard on a controller app: NiceGUI at /ui, `/` leading to it.

NiceGUI keeps one set of pages and one server app per process and `run_with`
can wire it into one FastAPI app only, so this refuses a second mount; tests
that build many controller apps leave the dashboard off (`create_app(dashboard=False)`)
and drive the pages with NiceGUI's simulated user instead. Mounting at /ui (not
"/") keeps the API, /docs and /metrics reachable beside it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from nicegui import app as nicegui_app
from nicegui import ui
from starlette.routing import Mount

from tme.ui.context import bind
from tme.ui.csrf import SameOriginOnly
from tme.ui.live import start_live_updates
from tme.ui.pages import register_pages
from tme.ui.theme import PREFIX

MOUNT_PATH = "/ui"
PUBLIC = {"x-permission": "public"}  # the dashboard checks its own session cookie

_mounted: list[FastAPI] = []


def prepare_pages(state: Any, prefix: str) -> None:
    """Bind the pages to a controller app's state and declare them (tests call this)."""
    bind(state)
    PREFIX["path"] = prefix
    register_pages()
    start_live_updates()


def mount_dashboard(app: FastAPI, settings: Any) -> None:
    if _mounted:
        raise RuntimeError("the dashboard is already mounted in this process")
    _mounted.append(app)
    app.state.sign_in_path = MOUNT_PATH + "/login"  # where the API sends a person (enforce)
    prepare_pages(app.state, MOUNT_PATH)
    nicegui_app.add_middleware(SameOriginOnly)
    ui.run_with(
        app,
        mount_path=MOUNT_PATH,
        title="TME",
        favicon="⚙️",
        show_welcome_message=False,
        reconnect_timeout=10.0,
    )
    for route in app.routes:
        if isinstance(route, Mount) and route.path == MOUNT_PATH:
            route.openapi_extra = PUBLIC  # type: ignore[attr-defined]

    @app.get("/", include_in_schema=False, openapi_extra=PUBLIC)
    def to_dashboard() -> RedirectResponse:
        return RedirectResponse(MOUNT_PATH + "/", status_code=307)
