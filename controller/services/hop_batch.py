"""Hops for many runs at once, in a handful of statements.

The event consumer and the dispatcher move hundreds of runs per transaction. Loading
each run and its task as ORM objects and writing them back one by one costs about a
millisecond of CPU per hop; here the runs are read as plain rows in one query, each
hop is decided by the same rules as a single transition (`runs.move`, `runs.late_hop`),
and the batch is written with one executemany per table: run events and log lines
inserted, runs updated by id, and each task's mirror of its latest run updated where
that run is still the latest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, insert, select, update
from sqlmodel import Session

from tme.controller.services.runs import Hop, chunks, late_hop, log_rows, move
from tme.controller.store.models import Run, RunEvent, RunLog, Task, utcnow
from tme.controller.store.rows import table_of
from tme.errors import IllegalTransition
from tme.states import RunState

RUNS = table_of(Run)
TASKS = table_of(Task)

# Built once: constructing a statement costs more CPU than executing a small one.
INSERT_EVENTS = insert(table_of(RunEvent))
INSERT_LOGS = insert(table_of(RunLog))
UPDATE_RUNS = (
    update(RUNS)
    .where(RUNS.c.id == bindparam("b_id"))
    .values(
        state=bindparam("b_state"),
        reason=bindparam("b_reason"),
        result=bindparam("b_result", type_=RUNS.c.result.type),
        updated_at=bindparam("b_updated_at", type_=RUNS.c.updated_at.type),
        started_at=bindparam("b_started_at", type_=RUNS.c.started_at.type),
        finished_at=bindparam("b_finished_at", type_=RUNS.c.finished_at.type),
    )
)
# A task mirrors a run only while that run is its latest.
MIRROR_ON_TASKS = (
    update(TASKS)
    .where(and_(TASKS.c.id == bindparam("b_task_id"), TASKS.c.latest_run_id == bindparam("b_id")))
    .values(
        status=bindparam("b_state"),
        started_at=bindparam("b_started_at", type_=TASKS.c.started_at.type),
        finished_at=bindparam("b_finished_at", type_=TASKS.c.finished_at.type),
        updated_at=bindparam("b_updated_at", type_=TASKS.c.updated_at.type),
    )
)


@dataclass(slots=True)
class RunView:
    """The columns of a run that a hop reads and changes."""

    id: str
    task_id: int
    state: str
    reason: str
    result: dict[str, Any] | None
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    created_at: datetime | None = None  # read, never written by a hop
    # Where its task sends it (read, never written by a hop): only that agent answers.
    site: str | None = None
    agent: str | None = None


RUN_COLUMNS = [name for name in RunView.__slots__ if name not in ("site", "agent")]
LOAD_RUNS = (
    select(*[RUNS.c[name] for name in RUN_COLUMNS], TASKS.c.site, TASKS.c.agent)
    .join(TASKS, TASKS.c.id == RUNS.c.task_id)
    .where(RUNS.c.id.in_(bindparam("ids", expanding=True)))
    .order_by(RUNS.c.id)
    .with_for_update(of=RUNS)
)


class HopBatch:
    """Runs of one transaction, moved in memory and written by `write()`.

    The runs are locked in id order (on PostgreSQL), as `runs.load_runs` does, so the
    dispatcher and the event consumer never deadlock; tasks are updated in id order.
    """

    def __init__(self, session: Session, run_ids: Iterable[str]) -> None:
        self.session = session
        self.runs: dict[str, RunView] = {}
        wanted = sorted(set(run_ids))
        for chunk in chunks(wanted):
            for row in session.execute(LOAD_RUNS, {"ids": chunk}):
                self.runs[row.id] = RunView(*row)
        self._events: list[dict[str, Any]] = []
        self._logs: list[dict[str, Any]] = []
        self._changed: dict[str, RunView] = {}
        self._moved: dict[str, RunView] = {}
        self.finished: list[RunView] = []  # runs moved into a final state, in that order

    def record(self, run_id: str, hop: Hop) -> bool:
        """`runs.record_hop` for a run of the batch (the caller deduplicates event ids):
        True when the run moved; a late hop is recorded beside the state it reached."""
        run = self.runs[run_id]
        try:
            row = move(run, hop)
        except IllegalTransition:
            self._events.append(late_hop(run, hop))
            if hop.target.is_final and hop.result is not None:
                self._changed[run.id] = run
            return False
        if row is None:
            return False
        self._events.append(row)
        self._changed[run.id] = run
        self._moved[run.id] = run
        if hop.target.is_final:
            self.finished.append(run)
        return True

    def progress(self, run_id: str, result: dict[str, Any]) -> bool:
        """What the agent says of a run going on (a stop's first writes), kept as its
        result until the final one, and when it was said (`updated_at`: the watchdog
        counts a stop's timeout from the end of the hold it says); a run already final
        keeps its own (False)."""
        run = self.runs[run_id]
        if RunState(run.state).is_final:
            return False
        run.result = result
        run.updated_at = utcnow()
        self._changed[run.id] = run
        return True

    def log(self, run_id: str, text: str, at: datetime | None, event_id: str | None) -> None:
        """Log output of a run of the batch, one row per line (as `runs.append_log`)."""
        self._logs.extend(log_rows(run_id, text, at, event_id))

    def write(self) -> None:
        """One statement per table for everything recorded."""
        session = self.session
        if self._events:
            session.execute(INSERT_EVENTS, self._events)
        if self._logs:
            session.execute(INSERT_LOGS, self._logs)
        if self._changed:
            changed = sorted(self._changed.values(), key=lambda r: r.id)
            session.execute(UPDATE_RUNS, [_params(run) for run in changed])
        if self._moved:
            moved = sorted(self._moved.values(), key=lambda r: (r.task_id, r.id))
            session.execute(MIRROR_ON_TASKS, [_params(run) for run in moved])
        self._events, self._logs, self._changed, self._moved = [], [], {}, {}


WRITTEN = [name for name in RUN_COLUMNS if name != "created_at"]


def _params(run: RunView) -> dict[str, Any]:
    return {f"b_{name}": getattr(run, name) for name in WRITTEN}
