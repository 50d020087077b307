"""What changed since a point: run transitions, run log lines and agent presence.

The database is the record of run changes: they are read from `run_events` (and
log lines from `run_logs`) by id, so a reader resumes exactly where it stopped
whoever wrote them (the API, the dispatcher, the event consumer, another process).
Presence has no change table, so the feed keeps the latest agent changes in a
bounded ring numbered in arrival order. Bus threads only ring a doorbell; waiting
readers (the SSE stream, the dashboard, notifications) wake at once instead of at
their next poll.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller.store.models import Run, RunEvent, RunLog, Task
from tme.protocol import Event, GatewayStatus, Presence
from tme.states import is_late

# Presence changes kept for readers that resume; a reader further behind than this
# misses agent changes (never run changes, which come from the database).
RING_SIZE = 2000
BATCH = 500


@dataclass(frozen=True)
class RunChange:
    event_id: int
    run_id: str
    task_id: int
    task_name: str
    op: str
    site: str | None
    agent: str | None
    device: str | None
    from_state: str | None
    to_state: str
    reason: str
    at: datetime
    # Whether the run was its task's latest when the change was read: the task's status
    # follows that run's changes only (an older run can still change, e.g. time out).
    latest: bool = True

    @property
    def late(self) -> bool:
        """A hop recorded after the run had moved past it (a confirm recorded after the
        gateway's delivered, a result after a final state): the run's state is still
        `from_state`, so a reader showing the state keeps it."""
        return is_late(self.from_state, self.to_state)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        data["late"] = self.late
        return data


@dataclass(frozen=True)
class LogLine:
    """One line an agent logged for a run (between its state changes)."""

    log_id: int
    run_id: str
    line: str
    at: datetime


@dataclass(frozen=True)
class AgentChange:
    seq: int
    site: str
    agent: str
    role: str
    state: str
    at: datetime
    # The devices this presence says are stopped, each with its latch (by, reason, at):
    # what notifies `device_stopped`. Not part of the event stream's agent change.
    stopped: tuple[tuple[str, dict[str, str]], ...] = field(default=(), compare=False)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        del data["stopped"]
        data["at"] = self.at.isoformat()
        return data


def _stopped(presence: Presence) -> tuple[tuple[str, dict[str, str]], ...]:
    """The devices an agent's presence says are stopped, with their latches."""
    return tuple(
        (str(device.get("name")), {k: str(v) for k, v in device["stopped"].items()})
        for device in presence.devices
        if isinstance(device, dict) and isinstance(device.get("stopped"), dict)
    )


class ChangeFeed:
    def __init__(self, engine: Engine, ring_size: int = RING_SIZE) -> None:
        self.engine = engine
        self._ring: deque[AgentChange] = deque(maxlen=ring_size)
        self._heartbeats: dict[tuple[str, str], GatewayStatus] = {}  # the last of each gateway
        self._seq = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # --- writers (any thread) ---------------------------------------------------

    def on_message(self, message: Event | Presence) -> None:
        """EventConsumer listener: called on a bus thread after the message was applied.
        A gateway's heartbeat (one every gateway.heartbeat_s) is a change only when what
        it says of the gateway changed (its MQTT link, its queue, what it holds)."""
        if isinstance(message, Presence) and self._changes(message):
            with self._lock:
                self._seq += 1
                self._ring.append(
                    AgentChange(
                        self._seq,
                        message.site,
                        message.agent,
                        message.role,
                        message.state,
                        message.at,
                        _stopped(message),
                    )
                )
        self.ring_bell()

    def _changes(self, presence: Presence) -> bool:
        if presence.status is None:
            return True
        key = (presence.site, presence.agent)
        with self._lock:
            said, self._heartbeats[key] = self._heartbeats.get(key), presence.status
        return said != presence.status

    def ring_bell(self) -> None:
        """Wake every waiting reader; safe from any thread."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    # --- readers ------------------------------------------------------------------

    async def wait(self, timeout: float) -> None:
        """Return when the bell rings or after `timeout` seconds."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter[1].wait(), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    @property
    def agent_seq(self) -> int:
        return self._seq

    def agents_after(self, seq: int, site: str | None = None) -> list[AgentChange]:
        with self._lock:
            return [c for c in self._ring if c.seq > seq and (site is None or c.site == site)]

    def last_run_event_id(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.max(RunEvent.id))).one() or 0)

    def last_log_id(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.max(RunLog.id))).one() or 0)

    def logs_after(self, after_id: int, limit: int = BATCH) -> tuple[list[LogLine], int]:
        """Log lines with an id above `after_id`, oldest first, and the last id read."""
        query = select(RunLog).where(col(RunLog.id) > after_id).order_by(col(RunLog.id))
        with Session(self.engine) as session:
            rows = session.exec(query.limit(limit)).all()
        lines = [LogLine(row.id or 0, row.run_id, row.line, row.at) for row in rows]
        return lines, (lines[-1].log_id if lines else after_id)

    def runs_after(
        self,
        after_id: int,
        *,
        site: str | None = None,
        task_id: int | None = None,
        states: frozenset[str] | None = None,
        limit: int = BATCH,
    ) -> tuple[list[RunChange], int]:
        """Run changes with an id above `after_id`, and the last id read (filtered or not).

        The id read is returned separately so a filtered reader still moves past
        changes it does not want. `states` is filtered in the query: a reader that wants
        only failures (the notifier) reads only those, and moves past the rest up to
        the newest id there was when it looked.
        """
        query = (
            select(RunEvent, Run.task_id, Task)
            .join(Run, col(Run.id) == col(RunEvent.run_id))
            .join(Task, col(Task.id) == col(Run.task_id))
            .where(col(RunEvent.id) > after_id)
            .order_by(col(RunEvent.id))
            .limit(limit)
        )
        with Session(self.engine) as session:
            newest = None
            if states is not None:
                newest = session.exec(
                    select(func.max(RunEvent.id)).where(col(RunEvent.id) > after_id)
                ).one()
                if newest is None:
                    return [], after_id
                query = query.where(
                    col(RunEvent.id) <= newest, col(RunEvent.to_state).in_(sorted(states))
                )
            rows = session.exec(query).all()
        last = after_id
        changes = []
        for event, run_task_id, task in rows:
            last = max(last, event.id or 0)
            if site is not None and task.site != site:
                continue
            if task_id is not None and run_task_id != task_id:
                continue
            changes.append(_run_change(event, task))
        if newest is not None and len(rows) < limit:
            last = newest  # every wanted change up to the newest was read
        return changes, last


def _run_change(event: RunEvent, task: Task) -> RunChange:
    return RunChange(
        event_id=event.id or 0,
        run_id=event.run_id,
        task_id=task.id or 0,
        task_name=task.name,
        op=task.op,
        site=task.site,
        agent=task.agent,
        device=task.device,
        from_state=event.from_state,
        to_state=event.to_state,
        reason=event.reason,
        at=event.at,
        latest=task.latest_run_id == event.run_id,
    )
