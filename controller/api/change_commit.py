"""A REST change committed with its audit row, in one transaction, or not at all.

The security layer (enforce.py) knows each change's row before the route runs but for
its outcome (audit.ChangeAudit, in `scope["state"]["change_audit"]`). A route that
changes something takes a `ChangeDep`: the chain is locked first, before the route
writes anything (on PostgreSQL every transaction that appends takes the chain's lock
before any row lock, or two of them deadlock), and `commit` appends the row with the
status the route will answer, then commits the change and the row together. A row
that cannot be written rolls the change back and answers 503, "nothing changed". Only
a request that committed no row (refused, failed: it changed nothing) gets its row
after the response, from the security layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from tme.controller.api.deps import SessionDep
from tme.controller.services import audit
from tme.controller.store.conflicts import in_transaction, lost_conflict

T = TypeVar("T")


def pending_row(request: Request) -> audit.ChangeAudit | None:
    """The request's row, put there by the security layer (None: not an audited change)."""
    pending = request.scope.get("state", {}).get("change_audit")
    return pending if isinstance(pending, audit.ChangeAudit) else None


def append_row(session: Session, engine: Engine, fields: dict[str, Any]) -> None:
    """Append a row (`audit.row_fields`) in `session`'s transaction, the chain locked
    first by the caller. One that cannot be written raises audit.RowNotWritten, the
    transaction rolled back; a lost conflict (a deadlock) is raised as it is, for its
    transaction to be run again (store/conflicts.py)."""
    try:
        audit.append_rows(session.connection(), audit.key_for(engine), [fields])
    except SQLAlchemyError as exc:
        session.rollback()
        if lost_conflict(exc):
            raise
        raise audit.row_not_written(fields["action"], fields["target"], exc) from exc


def commit_with_row(session: Session, engine: Engine, fields: dict[str, Any]) -> None:
    """Append the row and commit it with the change made in `session` (audit.RowNotWritten:
    neither is committed)."""
    append_row(session, engine, fields)
    session.commit()


@dataclass
class ChangeCommit:
    """One REST change's transaction (`session`), committed with its audit row."""

    session: Session
    engine: Engine
    pending: audit.ChangeAudit | None

    def commit(self, status: int, location: str = "", **details: Any) -> None:
        """Commit the change with its row saying it answered `status` (and `location`,
        `details`): both or neither. Without a row to write (the request is no audited
        change), a plain commit."""
        if self.pending is None or self.pending.written:
            self.session.commit()
            return
        commit_with_row(self.session, self.engine, self.pending.fields(status, location, details))
        self.pending.mark_written(status)


def lock_for(session: Session, pending: audit.ChangeAudit | None) -> None:
    """Lock the chain first in a transaction that will append `pending`'s row."""
    if pending is not None and not pending.written:
        audit.lock_chain(session.connection())


def change_commit(request: Request, session: SessionDep) -> ChangeCommit:
    """The route's change, the chain locked before it writes anything."""
    pending = pending_row(request)
    lock_for(session, pending)
    return ChangeCommit(session, request.app.state.engine, pending)


ChangeDep = Annotated[ChangeCommit, Depends(change_commit)]


def in_audited_transaction(
    engine: Engine, pending: audit.ChangeAudit | None, status: int, work: Callable[[Session], T]
) -> T:
    """`work` in a transaction of its own, run again while it loses a conflict
    (store/conflicts.in_transaction), each try locking the chain first and appending
    `pending`'s row (saying the route answered `status`) before it commits."""
    to_write = pending if pending is not None and not pending.written else None

    def audited(session: Session) -> T:
        lock_for(session, to_write)
        done = work(session)
        if to_write is not None:
            append_row(session, engine, to_write.fields(status))
        return done

    done = in_transaction(engine, audited)
    if to_write is not None:
        to_write.mark_written(status)
    return done
