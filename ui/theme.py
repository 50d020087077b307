"""The frame every dashboard page shares: header, navigation, who is signed in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import Request
from nicegui import run, ui

from tme.ui.session import Viewer, current_principal, page_of
from tme.ui.text import name, said

# The dashboard is mounted under this path. ui.link and ui.navigate add it by
# themselves (the page's window.path_prefix); URLs the page's own JavaScript opens
# must carry it. Tests run the pages unmounted ("").
PREFIX = {"path": "/ui"}

# How often an open page looks at its session again: once it ended (logged out, the user
# disabled) the page leaves for the sign-in page instead of showing changes.
SESSION_CHECK_S = 2.0

NAV = (
    ("Overview", "/", "task.read"),
    ("Tasks", "/tasks", "task.read"),
    ("Rollouts", "/rollouts", "task.read"),
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


def utc_time(when: datetime) -> str:
    """A time as the pages show it: in UTC, saying so (TME keeps every time in UTC; an
    operator reads it against a wall clock in another zone)."""
    return f"{when.astimezone(UTC) if when.tzinfo else when:%Y-%m-%d %H:%M:%S} UTC"


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


def reload_banner(marker: str) -> tuple[ui.row, ui.label]:
    """A hidden line saying what appeared since the page opened, with a Reload button:
    told, rather than moving the rows under the mouse."""
    with ui.row().classes("items-center gap-2 rounded bg-amber-100 px-3 py-1") as banner:
        text = ui.label().mark(marker)
        ui.button("Reload", on_click=lambda: ui.navigate.reload()).props("flat dense")
    banner.set_visibility(False)
    return banner, text


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
        ui.navigate.to("/login?" + urlencode({"next": page_of(request)}))
        return None
    return Viewer(request, principal)


LOGOUT_JS = """
fetch('/api/v1/auth/logout', {method: 'POST', credentials: 'same-origin'})
  .finally(() => { window.location.href = '%s'; });
"""


def _watch_session(viewer: Viewer) -> None:
    """Leave for the sign-in page once the session ended: the page's live updates stop
    with it, as its buttons already refuse (they look at the session on each click)."""

    async def look() -> None:
        if await run.io_bound(viewer.signed_out):  # None: the server is stopping
            watch.deactivate()
            ui.navigate.to("/login?" + urlencode({"next": viewer.page}))

    watch = ui.timer(SESSION_CHECK_S, look, immediate=False)


@contextmanager
def frame(title: str, viewer: Viewer) -> Iterator[None]:
    title = said(title)  # it may hold a name (the pages pass it through `name`)
    ui.page_title(f"{title} · TME")
    _watch_session(viewer)
    principal = viewer.principal
    with ui.header().classes("items-center gap-4 bg-slate-800 px-4"):
        ui.label("TME").classes("text-xl font-bold")
        for label, path, permission in NAV:
            if viewer.can(permission):
                ui.link(label, href(path)).classes("text-white no-underline")
        ui.space()
        ui.label(f"{name(principal.username)} · {principal.role}").classes("text-sm")
        ui.button("Log out", on_click=lambda: ui.run_javascript(LOGOUT_JS % url("/login"))).props(
            "flat color=white dense"
        )
    with ui.column().classes("w-full p-4 gap-4"):
        ui.label(title).classes("text-2xl font-medium")
        yield
