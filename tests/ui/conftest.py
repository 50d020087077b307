"""The dashboard's pages under NiceGUI's simulated user (no browser).

NiceGUI keeps one set of pages per process; each test resets it, declares the
TME pages bound to a fresh controller state on an upgraded SQLite database, and
talks to NiceGUI's app in-process. Paths are the dashboard's own (no /ui).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from nicegui import Client, core, ui
from nicegui.functions.download import download
from nicegui.functions.navigate import Navigate
from nicegui.functions.notify import notify
from nicegui.testing import User
from nicegui.testing.general import nicegui_reset_globals, prepare_simulation

SESSION_KEY = "ui-test-signing-key-0123456789abcdef"


@pytest.fixture
def board(app_settings, app_engine) -> Any:  # type: ignore[no-untyped-def]
    from tme.controller.change_feed import ChangeFeed

    return SimpleNamespace(
        engine=app_engine,
        settings=app_settings,
        change_feed=ChangeFeed(app_engine),
        session_key=SESSION_KEY,
        on_run_ready=None,
    )


@pytest.fixture
async def user(board: Any) -> AsyncIterator[User]:
    from tme.ui.mount import prepare_pages

    saved = dict(sys.modules)
    with nicegui_reset_globals():
        os.environ["NICEGUI_USER_SIMULATION"] = "true"
        try:
            prepare_simulation()
            prepare_pages(board, "")
            ui.run(storage_secret="simulated secret")
            async with core.app.router.lifespan_context(core.app):
                transport = httpx.ASGITransport(core.app)
                async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                    yield User(c)
                # A page's outbox loop can miss the cancel of the shutdown (Python 3.11's
                # asyncio.wait_for drops a cancel that meets the event it waits for), and
                # the shutdown then waits 2 s for it: stop them first, as deleting a
                # client does.
                for client in list(Client.instances.values()):
                    client.outbox.stop()
        finally:
            os.environ.pop("NICEGUI_USER_SIMULATION", None)
            ui.navigate = Navigate()
            ui.notify = notify
            ui.download = download
    # NiceGUI's reset unloads the modules that declared pages; keep TME's loaded
    # so every test (and the rest of the suite) sees the same classes.
    sys.modules.update(saved)


@pytest.fixture
def sign_in(board: Any, fixture_password: str) -> Callable[[User, str], None]:
    """Give the simulated browser a session cookie of a new user with `role`."""
    from tme.controller.services.sessions import SESSION_COOKIE, start_session
    from tme.controller.services.users import create_user, get_user, new_password_hash
    from tme.controller.store.db import session_scope

    def sign(user: User, role: str, sites: str = "*") -> None:
        name = f"{role}-{len(user.http_client.cookies)}"
        with session_scope(board.engine) as session:
            hashed = new_password_hash(fixture_password)
            create_user(session, name, hashed, role=role, sites=sites)
            session.commit()
            new = start_session(session, get_user(session, name), SESSION_KEY, 1)
            session.commit()
        user.http_client.cookies.set(SESSION_COOKIE, new.cookie)

    return sign
