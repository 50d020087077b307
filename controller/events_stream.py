"""GET /api/v1/events: Server-Sent Events of run and agent changes.

Each event's id is `<run event id>-<agent change number>`, the position of the
stream after it. A client that reconnects with `Last-Event-ID` (browsers'
EventSource do so by themselves) gets every run change it missed, read from the
database, and the agent changes still held in the controller's ring. Without
it the stream starts at the present.

A caller scoped to sites gets changes of those sites only, whatever it filters
on; asking for a site outside its grant is 404, as for another site's object.
The stream checks its credentials again every RECHECK_S: it ends once they are
revoked or expired, or their user disabled, and follows a narrowed grant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.sse import EventSourceResponse, ServerSentEvent
from sqlalchemy.exc import OperationalError

from tme.controller.api.deps import MAX_ID, NameFilter, PrincipalDep
from tme.controller.change_feed import ChangeFeed
from tme.controller.services.access import check_site_filter
from tme.controller.services.roles import Permission, Principal
from tme.controller.store.db import session_scope
from tme.controller.store.models import Task
from tme.errors import AuthError, NotFound, ValidationError
from tme.names import closest_hint
from tme.states import RunState

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["events"])

# How long a quiet stream waits before checking the database anyway (changes
# written by another process ring no bell here) and how often it sends a comment
# so proxies keep the connection open.
POLL_S = 0.5
KEEPALIVE_S = 15.0
RECHECK_S = 5.0  # how stale a stream's credentials may get (the API caches them 1 s)


def parse_position(
    value: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> tuple[int, int] | None:
    """A dependency, so a bad id is refused with 422 before the stream starts: one that
    is no pair of ASCII numbers a stream could have sent (a number past the database's
    integers, a "²" that isdigit() takes) broke the stream once it had begun."""
    if not value:
        return None
    run_part, sep, agent_part = value.strip().partition("-")
    if not sep or not all(_event_number(part) for part in (run_part, agent_part)):
        raise ValidationError(
            "invalid Last-Event-ID: pass the id of an event from this stream unchanged",
            field_errors=[
                {"field": "Last-Event-ID", "message": "invalid event id", "type": "value_error"}
            ],
        )
    return int(run_part), int(agent_part)


def _event_number(text: str) -> bool:
    """Whether `text` is a number an event id holds: ASCII digits, at most MAX_ID."""
    return text.isascii() and text.isdigit() and int(text) <= MAX_ID


def granted_site(principal: PrincipalDep, site: NameFilter = None) -> str | None:
    """A dependency, so a site outside the grant is refused before the stream starts."""
    check_site_filter(principal, site)
    return site


def granted_task(
    request: Request,
    principal: PrincipalDep,
    task: Annotated[int | None, Query(gt=0, le=MAX_ID)] = None,
) -> int | None:
    """A task that does not exist, or of a site outside the grant, is 404 (its events
    would never come: the stream would stay open and silent)."""
    if task is not None:
        with session_scope(request.app.state.engine) as session:
            found = session.get(Task, task)
        if found is None or not principal.sees_site(found.site):
            raise NotFound(f"task {task} does not exist", details={"task_id": task})
    return task


RUN_STATES = tuple(s.value for s in RunState)


def state_filter(
    state: Annotated[
        str | None, Query(max_length=200, description="comma-separated run states")
    ] = None,
) -> frozenset[str] | None:
    """The run states asked for, or None for all. A dependency, so a name that is no run
    state is refused with 422 before the stream starts: it would match nothing, and the
    stream would stay open and silent for ever."""
    names = [s.strip() for s in (state or "").split(",") if s.strip()]
    unknown = [name for name in names if name not in RUN_STATES]
    if unknown:
        said = ", ".join(repr(name) + closest_hint(name, RUN_STATES) for name in unknown)
        message = f"unknown run state {said}; one of: {', '.join(RUN_STATES)}"
        raise ValidationError(
            f"invalid request: state: {message}",
            field_errors=[{"field": "state", "message": message, "type": "enum"}],
        )
    return frozenset(names) or None


@router.get(
    "/events", response_class=EventSourceResponse, openapi_extra={"x-permission": "task.read"}
)
async def events(
    request: Request,
    principal: PrincipalDep,
    site: Annotated[str | None, Depends(granted_site)] = None,
    task: Annotated[int | None, Depends(granted_task)] = None,
    states: Annotated[frozenset[str] | None, Depends(state_filter)] = None,
    position: Annotated[tuple[int, int] | None, Depends(parse_position)] = None,
) -> AsyncIterator[ServerSentEvent]:
    feed: ChangeFeed = request.app.state.change_feed
    if position is None:
        position = (await run_in_threadpool(feed.last_run_event_id), feed.agent_seq)
    run_id, agent_seq = position
    if agent_seq > feed.agent_seq:  # the controller restarted: its ring starts again
        agent_seq = 0
    quiet = 0.0
    checked = time.monotonic()
    yield ServerSentEvent(comment="tme events", retry=2000)
    while not await request.is_disconnected():
        if time.monotonic() - checked >= RECHECK_S:
            checked = time.monotonic()
            still = await _still_admitted(request, principal)
            if still is None:
                return
            principal = still
        changes, run_id = await run_in_threadpool(
            feed.runs_after, run_id, site=site, task_id=task, states=states
        )
        changes = [c for c in changes if principal.sees_site(c.site)]
        for change in changes:
            yield ServerSentEvent(
                event="run", id=f"{change.event_id}-{agent_seq}", data=change.as_json()
            )
        top = feed.agent_seq
        agents = [] if task is not None or states else feed.agents_after(agent_seq, site)
        agents = [a for a in agents if principal.sees_site(a.site)]
        for agent in agents:
            agent_seq = agent.seq
            yield ServerSentEvent(event="agent", id=f"{run_id}-{agent_seq}", data=agent.as_json())
        agent_seq = max(agent_seq, top)
        if changes or agents:
            quiet = 0.0
            continue
        if quiet >= KEEPALIVE_S:
            quiet = 0.0
            yield ServerSentEvent(comment="keep-alive")
        await feed.wait(POLL_S)
        quiet += POLL_S


async def _still_admitted(request: Request, principal: Principal) -> Principal | None:
    """The stream's caller as its credentials stand now, or None once they no longer
    let it read runs. With the database unreachable, the grant it had stands."""
    authenticate: Callable[[], Principal] | None = request.scope.get("state", {}).get(
        "authenticate"
    )
    if authenticate is None:
        return principal
    try:
        fresh = await run_in_threadpool(authenticate)
    except AuthError as exc:
        log.info("event stream of %s ended: %s", principal.username, exc.message)
        return None
    except OperationalError:
        return principal
    return fresh if fresh.can(Permission.task_read) else None
