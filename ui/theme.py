"""The frame every dashboard page shares: header, navigation, who is signed in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from fastapi import Request
from nicegui import ui

from tme.ui.session import Viewer, current_principal

# The dashboard is mounted under this path. ui.link and ui.navigate add it by
# themselves (the page's window.path_prefix); URLs the page's own JavaScript opens
# must carry it. Tests run the pages unmounted ("").
PREFIX = {"path": "/ui"}

NAV = (
    ("Overview", "/", "task.read"),
    ("Tasks", "/tasks", "task.read"),
    ("Fleet", "/fleet", "fleet.read"),
    ("Reports", "/reports", "task.read"),
    ("Audit", "/audit", "audit.read"),
)

STATE_COLORS = {
    "idle": "grey",
    "pending": "blue-grey",
    "waiting": "blue-grey",
    "queued": "indigo",
    "dispatched": "indigo",
    "delivered": "indigo",
    "accepted": "blue",
    "running": "blue",
    "succeeded": "positive",
    "failed": "negative",
    "timed_out": "negative",
    "lost": "negative",
    "rejected": "orange",
    "expired": "orange",
    "canceled": "grey",
    "skipped": "grey",
    "online": "positive",
    "offline": "negative",
}


def href(path: str) -> str:
    """A ui.link target: the dashboard path as is (ui.link puts the mount path before it)."""
    return path


def url(path: str) -> str:
    """A URL for the browser's own JavaScript (window.location): with the mount path."""
    return PREFIX["path"] + path


def sideways() -> ui.element:
    """A box for a table wider than a phone's screen: the table scrolls sideways inside
    it, and the page (header, title, filters, other cards) stays as wide as the screen."""
    return ui.element("div").classes("w-full overflow-x-auto")


def state_chip(state: str, text: str | None = None) -> ui.badge:
    """A chip in the colour of `state`, saying `text` (the state itself by default)."""
    return ui.badge(text or state, color=STATE_COLORS.get(state, "grey")).classes("state-chip")


def set_chip(chip: ui.badge, state: str) -> None:
    chip.text = state
    chip.props(f"color={STATE_COLORS.get(state, 'grey')}")


def sign_in_first(request: Request) -> Viewer | None:
    """The page's viewer, or None after sending the browser to the login page."""
    principal = current_principal(request)
    if principal is None:
        # back to the same view once signed in: a bookmarked filter keeps its query
        page = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ui.navigate.to("/login?" + urlencode({"next": page}))
        return None
    return Viewer(request, principal)


LOGOUT_JS = """
fetch('/api/v1/auth/logout', {method: 'POST', credentials: 'same-origin'})
  .finally(() => { window.location.href = '%s'; });
"""


@contextmanager
def frame(title: str, viewer: Viewer) -> Iterator[None]:
    ui.page_title(f"{title} · TME")
    principal = viewer.principal
    with ui.header().classes("items-center gap-4 bg-slate-800 px-4"):
        ui.label("TME").classes("text-xl font-bold")
        for label, path, permission in NAV:
            if viewer.can(permission):
                ui.link(label, href(path)).classes("text-white no-underline")
        ui.space()
        ui.label(f"{principal.username} · {principal.role}").classes("text-sm")
        ui.button("Log out", on_click=lambda: ui.run_javascript(LOGOUT_JS % url("/login"))).props(
            "flat color=white dense"
        )
    with ui.column().classes("w-full p-4 gap-4"):
        ui.label(title).classes("text-2xl font-medium")
        yield
