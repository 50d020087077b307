"""Retention: delete what is older than a cutoff and that nothing needs any more.

Runs (with their events, logs, links and published commands), published outbox rows,
schedule slots, idempotency keys, ended dashboard sessions, finished notification
deliveries and the cancels of workflow runs none of whose runs is kept go; the audit
log never does (each row's hash chains it to the one before).
Rows go in chunks of CHUNK, one short transaction each, so SQLite's one writer and
PostgreSQL's row locks are held briefly and the controller keeps working beside it.

A run is kept while anything may still read it: a task's latest run (the task's
status mirrors it), a run not final, and every run of a workflow run with a link not
settled yet (the workflow engine still looks up its steps' outcomes there).
`Pruner` runs `prune` periodically in the controller (`database.retention_days`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, exists, func, select
from sqlalchemy.engine import Connection, Engine

from tme.controller.notifications.models import NotificationDelivery
from tme.controller.store.models import (
    IdempotencyKey,
    Outbox,
    Run,
    RunEvent,
    RunLog,
    Task,
    utcnow,
)
from tme.controller.store.rows import table_of
from tme.controller.store.security_models import ApiToken
from tme.controller.store.workflow_models import RunLink, ScheduleSlot, WorkflowCancel
from tme.failure_log import FailureLog
from tme.schemas import Misfire
from tme.states import FINAL_STATES

log = logging.getLogger("tme.prune")

CHUNK = 1000  # rows per transaction: a few milliseconds of writing on either database
FINAL_VALUES = sorted(s.value for s in FINAL_STATES)
RUNS, TASKS, LINKS = table_of(Run), table_of(Task), table_of(RunLink)
EVENTS, LOGS, OUTBOX = table_of(RunEvent), table_of(RunLog), table_of(Outbox)
SLOTS, KEYS = table_of(ScheduleSlot), table_of(IdempotencyKey)
TOKENS, DELIVERIES = table_of(ApiToken), table_of(NotificationDelivery)
OTHER_LINKS = LINKS.alias("other_links")
CANCELS = table_of(WorkflowCancel)
# A slot younger than the longest misfire grace may still be looked at when its
# schedule fires late; older ones are only history.
MAX_GRACE = timedelta(
    seconds=next(m.le for m in Misfire.model_fields["grace_s"].metadata if hasattr(m, "le"))
)
# The tables of a run, emptied before the run goes (cascades would do it, but then
# nothing would count the rows).
RUN_CHILDREN = (("run_logs", LOGS), ("run_events", EVENTS), ("run_links", LINKS))


def prune(
    engine: Engine,
    older_than: timedelta,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    stop: threading.Event | None = None,
) -> dict[str, int]:
    """Delete (or with `dry_run`, count) what is older than `older_than`; return the rows
    of each table. `stop` set ends the work between two chunks."""
    now = now or utcnow()
    cutoff = now - older_than
    pruning = _Pruning(engine, dry_run, stop or threading.Event())
    counts = pruning.runs(cutoff)
    counts["outbox"] += pruning.rows(OUTBOX.c.id, _published_before(cutoff))
    counts["schedule_slots"] = pruning.slots(min(cutoff, now - MAX_GRACE))
    counts["idempotency_keys"] = pruning.rows(KEYS.c.key, KEYS.c.created_at < cutoff)
    counts["dashboard_sessions"] = pruning.rows(TOKENS.c.id, _ended_sessions(cutoff))
    counts["notification_deliveries"] = pruning.rows(DELIVERIES.c.id, _finished(cutoff))
    counts["workflow_cancels"] = pruning.rows(CANCELS.c.workflow_id, _cancels_gone(cutoff))
    return counts


def prunable_runs(cutoff: datetime) -> Any:
    """The ids of the runs that may go: final before the cutoff, no task's latest run,
    settled, and in a workflow run whose every link is settled."""
    workflow_open = (
        select(OTHER_LINKS.c.run_id)
        .where(OTHER_LINKS.c.workflow_id == LINKS.c.workflow_id, OTHER_LINKS.c.settled.is_(False))
        .exists()
    )
    return select(RUNS.c.id).where(
        RUNS.c.finished_at < cutoff,
        # `|| ''` keeps the plan off the state index (nearly every run kept is final):
        # it starts from the runs finished before the cutoff instead.
        RUNS.c.state.concat("").in_(FINAL_VALUES),
        ~exists().where(TASKS.c.id == RUNS.c.task_id, TASKS.c.latest_run_id == RUNS.c.id),
        exists().where(LINKS.c.run_id == RUNS.c.id, LINKS.c.settled.is_(True), ~workflow_open),
    )


def _published_before(cutoff: datetime) -> ColumnElement[bool]:
    return OUTBOX.c.published_at < cutoff


def _ended_sessions(cutoff: datetime) -> ColumnElement[bool]:
    """Dashboard sessions that expired or were revoked before the cutoff. API tokens
    stay: an administrator lists and revokes them by name, and they are few."""
    ended = (TOKENS.c.expires_at < cutoff) | (TOKENS.c.revoked_at < cutoff)
    return (TOKENS.c.kind == "session") & ended


def _cancels_gone(cutoff: datetime) -> ColumnElement[bool]:
    """Cancels of workflow runs, before the cutoff, of which no run is kept (a workflow
    run's runs go only once every one of them is settled: nothing starts there again)."""
    kept = exists().where(LINKS.c.workflow_id == CANCELS.c.workflow_id)
    return (CANCELS.c.canceled_at < cutoff) & ~kept


def _finished(cutoff: datetime) -> ColumnElement[bool]:
    """Deliveries sent, or given up (whose last try was planned for `next_attempt_at`),
    before the cutoff; pending ones stay whatever their age."""
    sent = (DELIVERIES.c.status == "delivered") & (DELIVERIES.c.delivered_at < cutoff)
    given_up = (DELIVERIES.c.status == "failed") & (DELIVERIES.c.next_attempt_at < cutoff)
    return sent | given_up


class _Pruning:
    """One pass: deletes chunk by chunk, each chunk its own transaction."""

    def __init__(self, engine: Engine, dry_run: bool, stop: threading.Event) -> None:
        self.engine, self.dry_run, self.stop = engine, dry_run, stop

    def runs(self, cutoff: datetime) -> dict[str, int]:
        """Prune runs with the rows of their child tables and their published commands."""
        counts = {"runs": 0, "run_events": 0, "run_logs": 0, "run_links": 0, "outbox": 0}
        if self.dry_run:
            with self.engine.connect() as connection:
                return _count_runs(connection, prunable_runs(cutoff), counts)
        # FOR UPDATE: on SQLite it takes the write gate for the whole chunk, so no other
        # writer of this process settles or links anything between the read and the
        # deletes (SQLite drops the clause); on PostgreSQL it locks the runs read.
        chosen = prunable_runs(cutoff).limit(CHUNK).with_for_update()
        while not self.stop.is_set():
            with self.engine.begin() as connection:
                ids = list(connection.execute(chosen).scalars())
                if ids:
                    _delete_runs(connection, ids, counts)
            if len(ids) < CHUNK:
                break
        return counts

    def slots(self, before: datetime) -> int:
        """Prune schedule slots task by task, so each read follows the primary key."""
        with self.engine.connect() as connection:
            task_ids = list(connection.execute(select(TASKS.c.id)).scalars())
        return sum(
            self.rows(SLOTS.c.slot_at, (SLOTS.c.task_id == t) & (SLOTS.c.slot_at < before))
            for t in task_ids
        )

    def rows(self, key: Any, where: ColumnElement[bool]) -> int:
        """Prune the rows of `key`'s table that `where` selects, CHUNK at a time."""
        table: Table = key.table
        if self.dry_run:
            with self.engine.connect() as connection:
                return int(connection.execute(select(func.count()).where(where)).scalar_one())
        deleted = 0
        while not self.stop.is_set():
            with self.engine.begin() as connection:
                keys = list(connection.execute(select(key).where(where).limit(CHUNK)).scalars())
                if keys:
                    result = connection.execute(delete(table).where(where, key.in_(keys)))
                    deleted += result.rowcount
            if len(keys) < CHUNK:
                break
        return deleted


def _delete_runs(connection: Connection, ids: list[str], counts: dict[str, int]) -> None:
    published = OUTBOX.c.run_id.in_(ids) & OUTBOX.c.published_at.is_not(None)
    counts["outbox"] += connection.execute(delete(OUTBOX).where(published)).rowcount
    for name, table in RUN_CHILDREN:
        counts[name] += connection.execute(delete(table).where(table.c.run_id.in_(ids))).rowcount
    counts["runs"] += connection.execute(delete(RUNS).where(RUNS.c.id.in_(ids))).rowcount


def _count_runs(connection: Connection, runs: Any, counts: dict[str, int]) -> dict[str, int]:
    """What pruning runs would delete, counted without deleting."""
    counts["runs"] = _count(connection, RUNS.c.id.in_(runs))
    for name, table in RUN_CHILDREN:
        counts[name] = _count(connection, table.c.run_id.in_(runs))
    published = OUTBOX.c.published_at.is_not(None)
    counts["outbox"] = _count(connection, OUTBOX.c.run_id.in_(runs) & published)
    return counts


def _count(connection: Connection, where: ColumnElement[bool]) -> int:
    return int(connection.execute(select(func.count()).where(where)).scalar_one())


class Pruner:
    """Prunes every `every_s` in a thread of its own, while `should_prune()` says so (the
    controller holding the scheduler lease: one controller prunes, not all of them)."""

    def __init__(
        self,
        engine: Engine,
        keep: timedelta,
        *,
        every_s: float = 3600.0,
        first_s: float = 60.0,
        should_prune: Callable[[], bool] = lambda: True,
    ) -> None:
        self.engine, self.keep = engine, keep
        self.every_s, self.first_s = every_s, first_s
        self.should_prune = should_prune
        self.passes = 0  # finished passes, for tests and logs
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failures = FailureLog(log, "pruning old rows")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tme-prune", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop, ending a pass in progress after its current chunk."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _loop(self) -> None:
        # The first pass waits a little: a controller just started has other work first,
        # and has not yet taken the scheduler lease.
        wait = self.first_s
        while not self._stop.wait(wait):
            wait = self.every_s
            if self.should_prune():
                self.run_pass()

    def run_pass(self) -> None:
        """Prune once. A failure is logged (once, then at most once a minute while it
        lasts), never raised: the next pass, `every_s` later, tries again."""
        try:
            counts = prune(self.engine, self.keep, stop=self._stop)
        except Exception as exc:
            self.failures.failed(exc)
            return
        self.failures.passed()
        self.passes += 1
        deleted = {table: rows for table, rows in counts.items() if rows}
        log.info("pruned rows older than %s: %s", self.keep, deleted or "none")
