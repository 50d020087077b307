"""The login page: the browser posts to /api/v1/auth/login, which sets the session cookie."""

from __future__ import annotations

import json

from nicegui import ui

from tme.ui.theme import url

LOGIN_JS = """
const r = await fetch('/api/v1/auth/login', {
  method: 'POST', credentials: 'same-origin',
  headers: {'Content-Type': 'application/json'}, body: JSON.stringify(%s)});
if (r.ok) { window.location.href = %s; return 'ok'; }
const body = await r.json().catch(() => ({}));
return (body.error && body.error.message) || ('login failed: HTTP ' + r.status);
"""


# The controller's own pages a sign-in may lead back to (the session cookie reads them).
OUTSIDE_THE_DASHBOARD = ("/docs", "/redoc")


def after_sign_in(next: str) -> str:
    """Where a sign-in leads: `next`, a path of this server (a dashboard page, or the
    API's documentation), else the dashboard's first page."""
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    if not target.startswith(url("/")) and target not in OUTSIDE_THE_DASHBOARD:
        target = url(target)
    return target


def register() -> None:
    @ui.page("/login")
    def login_page(next: str = "/") -> None:
        ui.page_title("Sign in · TME")
        target = after_sign_in(next)

        async def submit() -> None:
            body = json.dumps({"username": username.value, "password": password.value})
            answer = await ui.run_javascript(LOGIN_JS % (body, json.dumps(target)), timeout=10)
            if answer != "ok":
                message.text = str(answer)

        with ui.card().classes("absolute-center w-80"):
            ui.label("TME").classes("text-2xl font-bold")
            ui.label("Sign in to the dashboard").classes("text-sm text-gray-600")
            username = ui.input("Username").classes("w-full").props('autocomplete="username"')
            password = ui.input("Password", password=True).classes("w-full")
            password.props('autocomplete="current-password"').on("keydown.enter", submit)
            ui.button("Sign in", on_click=submit).classes("w-full sign-in")
            message = ui.label("").classes("text-negative text-sm")
