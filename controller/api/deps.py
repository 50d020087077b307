"""Typed dependencies of the REST routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from tme.controller.services.tasks import RunReadyHook
from tme.controller.store.db import session_scope

MAX_ID = 2**63 - 1


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """A session whose transaction the route commits with `session.commit()`."""
    with session_scope(engine) as session:
        yield session


def get_run_ready_hook(request: Request) -> RunReadyHook | None:
    hook: RunReadyHook | None = getattr(request.app.state, "on_run_ready", None)
    return hook


def get_settings(request: Request) -> Any:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
RunReadyDep = Annotated[RunReadyHook | None, Depends(get_run_ready_hook)]
TaskId = Annotated[int, Path(gt=0, le=MAX_ID, description="The task's id")]
