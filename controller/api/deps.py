"""Typed dependencies of the REST routes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from pydantic import AfterValidator
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.services.roles import Principal
from tme.controller.services.runs import RunReadyHook
from tme.controller.store.db import session_scope
from tme.controller.store.models import MAX_ID, Run, Task
from tme.errors import AuthError, NotFound
from tme.schemas import check_name
from tme.states import TASK_STATUSES, task_status

# Dependencies that only read the request are `async def`: FastAPI runs a plain `def`
# dependency on its thread pool, a hop that costs more than the lookup.


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Session]:
    """A session whose transaction the route commits with `session.commit()`."""
    with session_scope(engine) as session:
        yield session


async def get_run_ready_hook(request: Request) -> RunReadyHook | None:
    hook: RunReadyHook | None = getattr(request.app.state, "on_run_ready", None)
    return hook


def wake_scheduler(request: Request, *, housekeeping: bool = False) -> None:
    """Have the scheduling loop look at the runs now (workflow steps to settle, a
    paused task; with `housekeeping`, due retries too), not at its next tick; nothing
    when the app has no runtime."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        runtime.scheduling.wake(housekeeping=housekeeping)


SessionDep = Annotated[Session, Depends(get_session)]
RunReadyDep = Annotated[RunReadyHook | None, Depends(get_run_ready_hook)]


def in_utc(when: datetime | None) -> datetime | None:
    """A time with a UTC offset, converted to UTC (one without is left to its route).

    Done while the request is validated: a time that leaves the calendar once in UTC
    (0001-01-01T00:00:00+14:00) is then a 422 naming its parameter, not an
    OverflowError where the query binds it.
    """
    if when is None or when.tzinfo is None:
        return when
    try:
        return when.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("out of range once converted to UTC") from exc


# The type of every time query parameter (the `since` and `until` of a period).
TimeQuery = Annotated[datetime | None, AfterValidator(in_utc)]


def task_status_filter(word: str | None) -> str | None:
    """A task status to filter on (a report word names its state); "" filters nothing.
    Done while the request is validated: an unknown one is a 422 naming `status` and
    the statuses there are, where it would have matched no task."""
    return task_status(word) if word else None


def name_filter(name: str | None) -> str | None:
    """A `site` or `agent` filter: a name no site or agent can have ("plant 1", "a/b")
    is a 422 saying what a name may hold, where it answered an empty list."""
    return None if name is None else check_name(name)


# The type of a `site` or `agent` filter (an empty one: "at least 1 character").
NameFilter = Annotated[str | None, Query(min_length=1, max_length=64), AfterValidator(name_filter)]


# The type of the `status` filter of the task lists.
TaskStatusQuery = Annotated[
    str | None,
    Query(max_length=16, description=f"one of: {', '.join(TASK_STATUSES)}"),
    AfterValidator(task_status_filter),
]


async def current_principal(request: Request) -> Principal:
    """Who the request acts as, admitted by the enforcement middleware (none: refuse)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise AuthError("authentication required")
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def visible_task_id(
    task_id: Annotated[int, Path(gt=0, le=MAX_ID, description="The task's id")],
    session: SessionDep,
    principal: PrincipalDep,
) -> int:
    """A task of a site outside the principal's grant answers 404, as if it did not exist."""
    task = session.get(Task, task_id)
    if task is not None and not principal.sees_site(task.site):
        raise NotFound(f"task {task_id} does not exist", details={"task_id": task_id})
    return task_id


def visible_run_id(
    run_id: Annotated[str, Path(min_length=1, max_length=64, description="The run's id")],
    session: SessionDep,
    principal: PrincipalDep,
) -> str:
    run = session.get(Run, run_id)
    task = session.get(Task, run.task_id) if run is not None else None
    if task is not None and not principal.sees_site(task.site):
        raise NotFound(f"run {run_id} does not exist", details={"run_id": run_id})
    return run_id


TaskId = Annotated[int, Depends(visible_task_id)]
RunId = Annotated[str, Depends(visible_run_id)]
