"""Read queries for runs: a task's runs (keyset pages), one run in full, the runs as the
API answers them (with their workflow run, cause and whether they are settled, from
`run_links`), and which runs the workflow engine has settled."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Session, col, select

from tme.controller.services.durations import duration_of
from tme.controller.services.paging import MAX_PAGE, decode_time_id_cursor, encode_cursor
from tme.controller.services.runs import chunks
from tme.controller.store.models import Run, RunEvent, RunLog, Task
from tme.controller.store.workflow_models import RunLink
from tme.errors import NotFound
from tme.schemas import RunDetail, RunEventPublic, RunLogLine, RunPublic
from tme.settings_models import SlowRunSettings
from tme.states import RunState

MAX_LOG_LINES = 5000


def list_runs(
    session: Session, task_id: int, *, limit: int = 50, cursor: str | None = None
) -> tuple[list[Run], str | None]:
    """A task's runs, newest first, keyset-paginated by (created_at, id)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Run).where(Run.task_id == task_id)
    if cursor:
        when, run_id = decode_time_id_cursor(cursor)
        query = query.where(
            or_(
                col(Run.created_at) < when,
                and_(col(Run.created_at) == when, col(Run.id) < run_id),
            )
        )
    query = query.order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit + 1)
    rows = list(session.exec(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return rows, (encode_cursor(last.created_at.isoformat(), last.id) if more and last else None)


def get_run_detail(session: Session, run_id: str, slow: SlowRunSettings | None = None) -> RunDetail:
    """The run with its hops and log, and how long it took against its task's usual
    (`slow`: the settings' rule of what is slow; the built-in one when not given)."""
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", details={"run_id": run_id})
    events = session.exec(
        select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
    ).all()
    log = session.exec(
        select(RunLog).where(RunLog.run_id == run_id).order_by(col(RunLog.id)).limit(MAX_LOG_LINES)
    ).all()
    base = run_public(session, run).model_dump()
    duration = duration_of(session, run, slow or SlowRunSettings())
    usual = duration.usual
    return RunDetail(
        **base,
        took_s=duration.took_s,
        usual_s=usual.median_s if usual else None,
        usual_runs=usual.runs if usual else 0,
        slow=duration.slow,
        events=[RunEventPublic.model_validate(e) for e in events],
        log=[RunLogLine.model_validate(line) for line in log],
    )


def run_publics(session: Session, runs: Sequence[Run]) -> list[RunPublic]:
    """The runs as the API answers them: each with its workflow run and cause, and
    whether the workflow engine has settled it (a final run whose link it marked), read
    from their links in one query."""
    links = _links_of(session, [run.id for run in runs])
    answered = []
    for run in runs:
        link = links.get(run.id)
        update: dict[str, object] = {
            "settled": link is not None and link.settled and RunState(run.state).is_final
        }
        if link is not None:
            update |= {"workflow_id": link.workflow_id, "cause": link.cause}
        answered.append(RunPublic.model_validate(run).model_copy(update=update))
    return answered


def run_public(session: Session, run: Run) -> RunPublic:
    return run_publics(session, [run])[0]


def _links_of(session: Session, run_ids: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for chunk in chunks(sorted(set(run_ids))):
        query = select(RunLink.run_id, RunLink.workflow_id, RunLink.cause, RunLink.settled).where(
            col(RunLink.run_id).in_(chunk)
        )
        found.update((row[0], row) for row in session.execute(query))
    return found


def settled_latest_among(session: OrmSession, run_ids: Iterable[str]) -> set[str]:
    """Which of these final runs are settled and still their task's latest run, read in
    one statement, so at one moment: the task rows they came from were read by another
    statement, possibly before the settling, which plans the retry that becomes the
    task's latest run. Read apart, a task could be answered final and settled while its
    retry was already on the way (TaskPublic.settled)."""
    found: set[str] = set()
    for chunk in chunks(sorted(set(run_ids))):
        query = (
            select(RunLink.run_id)
            .join(Task, col(Task.latest_run_id) == col(RunLink.run_id))
            .where(col(RunLink.run_id).in_(chunk), col(RunLink.settled))
        )
        found.update(session.scalars(query))
    return found
