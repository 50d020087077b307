"""New tasks built in full before their transaction's first write.

A task created to run at once brings up to seven rows: the task, its policy, its first
run with the pending and queued hops, the run's link, the outbox command, and an
idempotency key. On SQLite one connection writes at a time, from its first write to
its commit (store/sqlite_gate.py), so whatever a create does between those two holds
up the dispatcher and the event consumer. Built as ORM objects after the tasks'
flush, that was most of a create's CPU. Here every row is built first, by the rules
of `start_run`, `link_run`, `store_policy` and `queue_run` (their row builders are
shared); the tasks' flush gives their ids, and what is left for the write phase is
stamping the ids in, encoding the commands and one executemany per table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session, SQLModel

from tme.controller.outbox import (
    QUEUED_REASON,
    Wake,
    command_of,
    dispatched_to_agent,
    not_after_of,
    wake_after_commit,
)
from tme.controller.services.hop_batch import RunView
from tme.controller.services.launch import link_values
from tme.controller.services.policies import new_policy
from tme.controller.services.runs import Hop, move, pending_row
from tme.controller.store.db import adopt_written
from tme.controller.store.models import (
    IdempotencyKey,
    Outbox,
    Run,
    RunEvent,
    Task,
    new_uuid,
    utcnow,
)
from tme.controller.store.rows import new_row, table_of
from tme.controller.store.workflow_models import RunLink, TaskPolicy
from tme.schemas import TaskCreate
from tme.states import RunState

# Built once, in the order the foreign keys need.
INSERTS = [
    (name, insert(table_of(model)))
    for name, model in (
        ("policies", TaskPolicy),
        ("keys", IdempotencyKey),
        ("runs", Run),
        ("events", RunEvent),
        ("links", RunLink),
        ("outbox", Outbox),
    )
]


@dataclass(slots=True)
class _Start:
    """The first run of a task that starts at once, and its command when it has one."""

    run: dict[str, Any]
    link: dict[str, Any]
    # For a run that goes to an agent: its timeout and outbox row, whose body (the
    # command) is encoded once the task has its id; the run row holds its not_after.
    outbox: tuple[float, dict[str, Any]] | None = None


@dataclass(slots=True)
class _Planned:
    task: Task
    policy: TaskPolicy  # its row is written by INSERTS, then the object joins the session
    key: dict[str, Any] | None
    start: _Start | None


@dataclass
class StartBatch:
    """The new tasks of one transaction, planned before it writes and written after the
    tasks' flush. The timeouts and the wake-up are those of the run-ready hook."""

    default_timeout_s: float
    queue_timeout_s: float
    wake: Wake
    _planned: list[_Planned] = field(default_factory=list)
    _events: list[dict[str, Any]] = field(default_factory=list)

    def plan(self, task: Task, data: TaskCreate, key: tuple[str, str] | None) -> None:
        """Build the rows of `task` (not flushed yet); `key` is (key, request hash).
        A task without a schedule, trigger or dependencies starts at once: its latest
        run and status are set on it now, so its INSERT carries them."""
        starts = data.schedule is None and data.trigger is None and not data.depends_on
        self._planned.append(
            _Planned(
                task,
                new_policy(0, data),
                new_row(IdempotencyKey, key=key[0], request_hash=key[1], task_id=0)
                if key
                else None,
                self._start(task, data) if starts else None,
            )
        )

    def _start(self, task: Task, data: TaskCreate) -> _Start:
        now = utcnow()
        run = RunView(new_uuid(), 0, RunState.pending.value, "created", None, now, None, None, now)
        self._events.append(pending_row(run.id, now, "created", "api"))
        link = new_row(
            RunLink, **link_values(run.id, now, cause="created", deadline_s=data.deadline_s)
        )
        start, not_after = _Start({}, link), None
        if dispatched_to_agent(task):
            queue_s = data.queue_timeout_s or self.queue_timeout_s
            not_after = not_after_of(now, queue_s, link["deadline_at"])
            row = new_row(Outbox, run_id=run.id, site=task.site or "", body="")
            start.outbox = (task.timeout_s or self.default_timeout_s, row)
            queued = move(run, Hop(RunState.queued, QUEUED_REASON, at=now))
            self._events.extend([queued] if queued else [])
        start.run = {
            "id": run.id,
            "task_id": 0,
            "state": run.state,
            "attempt": 1,
            "reason": run.reason,
            "result": None,
            "not_after": not_after,
            "created_at": now,
            "updated_at": run.updated_at,
            "started_at": None,
            "finished_at": None,
        }
        task.latest_run_id, task.status, task.updated_at = run.id, run.state, run.updated_at
        return start

    def write(self, session: Session) -> None:
        """After the tasks' flush: their ids into the rows, then one statement per table."""
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in INSERTS}
        rows["events"] = self._events
        for planned in self._planned:
            task_id = planned.task.id
            planned.policy.task_id = task_id or 0
            rows["policies"].append(_columns(planned.policy))
            if planned.key is not None:
                rows["keys"].append({**planned.key, "task_id": task_id})
            start = planned.start
            if start is None:
                continue
            rows["runs"].append({**start.run, "task_id": task_id})
            rows["links"].append(start.link)
            if start.outbox is not None:
                timeout_s, outbox = start.outbox
                run, deadline = start.run, start.link["deadline_at"]
                command = command_of(
                    run["id"], 1, planned.task, timeout_s, run["not_after"], deadline
                )
                body = command.to_json().decode()
                rows["outbox"].append({**outbox, "body": body, "priority": command.priority})
        for name, statement in INSERTS:
            if rows[name]:
                session.execute(statement, rows[name])
        # Reading a new task back (its public form shows its policy) takes no query.
        adopt_written(session, [planned.policy for planned in self._planned])
        if rows["outbox"]:
            wake_after_commit(session, self.wake)
        self._planned, self._events = [], []


def _columns(row: SQLModel) -> dict[str, Any]:
    """A model's column values as an INSERT's parameters (an unset id left to the DB)."""
    table = table_of(row)
    values = {c.key: getattr(row, c.key) for c in table.columns}
    return {k: v for k, v in values.items() if v is not None or not table.c[k].primary_key}
