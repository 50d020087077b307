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


def register() -> None:
    @ui.page("/login")
    def login_page(next: str = "/") -> None:
        ui.page_title("Sign in · TME")
        target = next if next.startswith("/") and not next.startswith("//") else "/"
        if not target.startswith(url("/")):
            target = url(target)

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
