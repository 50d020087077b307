"""What the dashboard's pages work on: the controller app they are mounted on.

NiceGUI keeps one set of pages per process, so the pages reach the engine,
settings and hooks through this one binding instead of module globals of their
own. It is set when the dashboard is mounted (or by a test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.change_feed import ChangeFeed


@dataclass
class Dashboard:
    state: Any  # the controller app's `app.state`

    @property
    def engine(self) -> Engine:
        engine: Engine = self.state.engine
        return engine

    @property
    def settings(self) -> Any:
        return self.state.settings

    @property
    def feed(self) -> ChangeFeed | None:
        return getattr(self.state, "change_feed", None)

    @property
    def session_key(self) -> str:
        return str(self.state.session_key)

    @property
    def on_run_ready(self) -> Any:
        return getattr(self.state, "on_run_ready", None)

    def session(self) -> Session:
        return Session(self.engine)


_bound: Dashboard | None = None


def bind(state: Any) -> Dashboard:
    global _bound
    _bound = Dashboard(state)
    return _bound


def dashboard() -> Dashboard:
    if _bound is None:
        raise RuntimeError("the dashboard is not mounted on a controller app")
    return _bound
