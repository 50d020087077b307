"""Read queries for runs: a task's runs (keyset pages) and one run in full."""

from __future__ import annotations

from sqlalchemy import and_, or_
from sqlmodel import Session, col, select

from tme.controller.services.paging import MAX_PAGE, decode_time_id_cursor, encode_cursor
from tme.controller.store.models import Run, RunEvent, RunLog
from tme.errors import NotFound
from tme.schemas import RunDetail, RunEventPublic, RunLogLine, RunPublic

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


def get_run_detail(session: Session, run_id: str) -> RunDetail:
    run = session.get(Run, run_id)
    if run is None:
        raise NotFound(f"run {run_id} does not exist", details={"run_id": run_id})
    events = session.exec(
        select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
    ).all()
    log = session.exec(
        select(RunLog).where(RunLog.run_id == run_id).order_by(col(RunLog.id)).limit(MAX_LOG_LINES)
    ).all()
    base = RunPublic.model_validate(run).model_dump()
    return RunDetail(
        **base,
        events=[RunEventPublic.model_validate(e) for e in events],
        log=[RunLogLine.model_validate(line) for line in log],
    )
