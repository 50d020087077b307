"""Moving runs between states: the one place that writes a transition.

Every transition goes through `transition`, which checks it against the state
machine in tme.states, records a RunEvent with its time and reason, keeps the
run's timestamps and its task's denormalised status in step, and applies a wire
event at most once (by event id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tme.controller.store.db import keep_loaded
from tme.controller.store.models import REASON_MAX, Run, RunEvent, RunLog, Task, utcnow
from tme.controller.store.rows import table_of
from tme.errors import IllegalTransition
from tme.states import RunState, check_transition

# Called with (session, run, task) when a new run is ready to go to an agent;
# the controller installs one that links it to its workflow run and queues it.
RunReadyHook = Callable[[Session, Run, Task], None]


@dataclass(frozen=True, slots=True)
class Hop:
    """A move of a run as reported: where to, why, by whom, when, and its wire event."""

    target: RunState
    reason: str = ""
    source: str = "controller"
    at: datetime | None = None
    event_id: str | None = None
    result: dict[str, Any] | None = None


def start_run(session: Session, task: Task, *, reason: str, source: str, attempt: int = 1) -> Run:
    """Create a run of `task` in state pending and make it the task's latest run. Its
    reason is its first hop's, as a run's reason is always its latest hop's."""
    reason = storable(reason)
    run = Run(task_id=task.id or 0, state=RunState.pending, attempt=attempt, reason=reason)
    session.add(run)
    session.add(RunEvent(**pending_row(run.id, run.created_at, reason, source)))
    task.latest_run_id = run.id
    task.status = RunState.pending
    task.started_at = None
    task.finished_at = None
    task.updated_at = run.created_at
    session.add(task)
    return run


def pending_row(run_id: str, at: datetime, reason: str, source: str) -> dict[str, Any]:
    """The run_events row of a run coming into being, in state pending."""
    return {
        "run_id": run_id,
        "at": at,
        "from_state": None,
        "to_state": RunState.pending.value,
        "reason": reason,
        "source": source,
        "event_id": None,
    }


def already_applied(session: Session, event_id: str | None) -> bool:
    """Whether an event with this id moved a run already."""
    return event_id is not None and bool(applied_event_ids(session, [event_id]))


def _seen_ids(column: Any) -> Any:
    """Which of the given event ids `column` holds (built once: a statement costs more
    to build than to run for a handful of ids)."""
    return sa_select(column).where(column.in_(bindparam("ids", expanding=True))).distinct()


EVENT_IDS_SEEN = _seen_ids(table_of(RunEvent).c.event_id)
LINE_EVENT_IDS_SEEN = _seen_ids(table_of(RunLog).c.event_id)


def applied_event_ids(
    session: Session, event_ids: Iterable[str | None], with_lines: Iterable[str] = ()
) -> set[str]:
    """The ids among `event_ids` already recorded as hops, and among `with_lines` (the
    events that carried log lines) already in the log: one query each for a batch,
    none on the log for a batch without lines."""
    found: set[str] = set()
    for query, ids in ((EVENT_IDS_SEEN, event_ids), (LINE_EVENT_IDS_SEEN, with_lines)):
        wanted = sorted({e for e in ids if e is not None})
        for chunk in chunks(wanted):
            seen = session.execute(query, {"ids": chunk}).scalars()
            found.update(e for e in seen if e is not None)
    return found


def load_runs(session: Session, run_ids: Iterable[str]) -> dict[str, Run]:
    """Runs by id with their tasks, in a few queries, for settling a batch.

    Not locked: the writers of hops (HopBatch) lock the runs they move. The tasks
    land in the session's identity map, so reading a run's task costs no query.
    """
    runs: dict[str, Run] = {}
    for chunk in chunks(sorted(set(run_ids))):
        query = select(Run).where(col(Run.id).in_(chunk)).order_by(col(Run.id))
        runs.update((run.id, run) for run in session.exec(query))
    task_ids = sorted({run.task_id for run in runs.values()})
    for chunk in chunks(task_ids):
        tasks = select(Task).where(col(Task.id).in_(chunk)).order_by(col(Task.id))
        keep_loaded(session, session.exec(tasks))
    keep_loaded(session, runs.values())
    return runs


def chunks(values: list[Any], size: int = 500) -> Iterator[list[Any]]:
    """`values` in slices small enough for one IN (...) list each."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def transition(
    session: Session,
    run: Run,
    to_state: RunState | str,
    *,
    reason: str = "",
    source: str = "controller",
    at: datetime | None = None,
    event_id: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Move `run` to `to_state`; False when it was already there or the event was seen.

    Raises tme.errors.IllegalTransition for a move the state machine refuses.
    """
    if already_applied(session, event_id):
        return False
    return _apply(session, run, Hop(RunState(to_state), reason, source, at, event_id, result))


def _apply(session: Session, run: Run, hop: Hop) -> bool:
    """The transition itself, once the event is known to be new."""
    row = move(run, hop)
    if row is None:
        return False
    session.add(RunEvent(**row))
    session.add(run)
    _mirror_on_task(session, run)
    return True


def storable(reason: str) -> str:
    """A reason as its column keeps it: an agent's may be longer, or hold a NUL, which
    PostgreSQL cannot store in text (kept as U+FFFD)."""
    return reason[:REASON_MAX].replace("\x00", "\ufffd")


def move(run: Any, hop: Hop) -> dict[str, Any] | None:
    """Move `run` (a Run, or a RunView of a batch) as `hop` says, in place, and return
    its run_events row; None when it is there already.

    Raises tme.errors.IllegalTransition for a move the state machine refuses.
    """
    target = hop.target
    if not check_transition(run.state, target):
        return None
    at = hop.at or utcnow()
    reason = storable(hop.reason)
    row = _event_row(run, hop, reason, at)
    run.state = target.value
    run.updated_at = at
    if reason:
        run.reason = reason
    if hop.result is not None:
        run.result = hop.result
    if target == RunState.running and run.started_at is None:
        run.started_at = at
    if target.is_final:
        run.finished_at = at
    return row


def late_hop(run: Any, hop: Hop) -> dict[str, Any]:
    """The run_events row of a hop that arrived after the run moved past it; a late final
    result is kept on the run beside the state it reached first."""
    late = "late result" if hop.target.is_final else "out of order"
    note = f"{late}: {hop.reason}" if hop.reason else late
    if hop.target.is_final and hop.result is not None:
        run.result = {**(run.result or {}), "late_result": hop.result}
    return _event_row(run, hop, storable(note), hop.at or utcnow())


def _event_row(run: Any, hop: Hop, reason: str, at: datetime) -> dict[str, Any]:
    """A run_events row of `run` (before it moves) going where `hop` says."""
    return {
        "run_id": run.id,
        "at": at,
        "from_state": run.state,
        "to_state": hop.target.value,
        "reason": reason,
        "source": hop.source,
        "event_id": hop.event_id,
    }


def _mirror_on_task(session: Session, run: Run) -> None:
    task = session.get(Task, run.task_id)
    if task is None or task.latest_run_id != run.id:
        return
    task.status = run.state
    task.started_at = run.started_at
    task.finished_at = run.finished_at
    task.updated_at = run.updated_at
    session.add(task)


def append_log(
    session: Session,
    run: Run,
    text: str,
    at: datetime | None = None,
    event_id: str | None = None,
) -> None:
    """Store log output, one row per line, with the event that carried it."""
    for row in log_rows(run.id, text, at, event_id):
        session.add(RunLog(**row))


# Lines kept of one piece of output (an event's line, an API log): 256 KiB of newlines
# would be 262,144 rows in one transaction.
MAX_LOG_LINES = 1000


def log_rows(
    run_id: str, text: str, at: datetime | None, event_id: str | None
) -> list[dict[str, Any]]:
    """The run_logs rows of some output: one per line (an empty text is one empty line),
    at most MAX_LOG_LINES of them; a NUL, which PostgreSQL cannot store in text (a serial
    instrument may send one), is kept as U+FFFD."""
    at = at or utcnow()
    lines = text.replace("\x00", "\ufffd").splitlines() or [""]
    if len(lines) > MAX_LOG_LINES:
        cut = len(lines) - MAX_LOG_LINES + 1
        lines = [*lines[: MAX_LOG_LINES - 1], f"... {cut} more lines not kept"]
    return [{"run_id": run_id, "at": at, "line": line, "event_id": event_id} for line in lines]


def record_hop(
    session: Session,
    run: Run,
    state: RunState | str,
    *,
    reason: str = "",
    source: str = "controller",
    at: datetime | None = None,
    event_id: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """Apply a hop reported by the path (watchdog, one event at a time), tolerating reordering.

    A hop that moves the run forward is a transition. A hop that arrives after the
    run moved past it (a late "delivered") is still recorded with its time, and a
    final outcome that arrives after another final state (a result after a timeout)
    is kept beside it as a late result; neither changes the run's state. Batches of
    hops (the event consumer, the dispatcher) go through HopBatch by the same rules.
    """
    if already_applied(session, event_id):
        return False
    hop = Hop(RunState(state), reason, source, at, event_id, result)
    try:
        return _apply(session, run, hop)
    except IllegalTransition:
        pass
    session.add(RunEvent(**late_hop(run, hop)))
    if hop.target.is_final and result is not None:
        session.add(run)
    return False
