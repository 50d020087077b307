"""The audit log: who changed what, when and from where, hash-chained.

Each row's hash covers its fields and the previous row's hash, so editing a row
breaks its own hash and deleting one breaks the next row's link; `verify_chain`
finds both. Rows are appended in their own short transaction under a lock, so
two writers never chain to the same predecessor.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller.store.db import session_scope
from tme.controller.store.models import utcnow
from tme.controller.store.security_models import AuditEntry

_APPEND_LOCK = threading.Lock()
_PG_LOCK_ID = 0x746D6561  # "tmea": one advisory lock shared by every controller process


def row_hash(entry: AuditEntry) -> str:
    fields = [
        entry.id,
        entry.at.isoformat(),
        entry.actor,
        entry.action,
        entry.target,
        entry.outcome,
        entry.client,
        entry.details,
        entry.prev_hash,
    ]
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    engine: Engine,
    action: str,
    *,
    actor: str = "",
    target: str = "",
    outcome: str = "ok",
    client: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one row and commit it."""
    with _APPEND_LOCK, session_scope(engine) as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})
        last = session.exec(select(AuditEntry).order_by(col(AuditEntry.id).desc())).first()
        entry = AuditEntry(
            at=utcnow(),
            actor=actor[:64],
            action=action[:64],
            target=target[:200],
            outcome=outcome[:16],
            client=client[:100],
            details=details or {},
            prev_hash=last.hash if last else "",
            hash="",
        )
        session.add(entry)
        session.flush()
        session.refresh(entry)  # read back as stored, so the hash covers what verify reads
        entry.hash = row_hash(entry)
        session.add(entry)
    return entry


@dataclass(frozen=True)
class ChainProblem:
    entry_id: int
    problem: str


def verify_chain(session: Session, batch: int = 1000) -> tuple[int, list[ChainProblem]]:
    """Check every row; return how many were read and what is wrong."""
    problems: list[ChainProblem] = []
    previous = ""
    count, last_id = 0, 0
    while True:
        rows = session.exec(
            select(AuditEntry)
            .where(col(AuditEntry.id) > last_id)
            .order_by(col(AuditEntry.id))
            .limit(batch)
        ).all()
        if not rows:
            return count, problems
        for entry in rows:
            entry_id = entry.id or 0
            if entry.prev_hash != previous:
                problems.append(ChainProblem(entry_id, "previous row missing or changed"))
            if entry.hash != row_hash(entry):
                problems.append(ChainProblem(entry_id, "row edited (hash mismatch)"))
            previous, last_id = entry.hash, entry_id
            count += 1


@dataclass(frozen=True)
class AuditFilters:
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def query(
    session: Session, filters: AuditFilters, *, limit: int = 100, before_id: int | None = None
) -> list[AuditEntry]:
    """Newest first; `before_id` pages back."""
    stmt = select(AuditEntry)
    if filters.actor:
        stmt = stmt.where(AuditEntry.actor == filters.actor)
    if filters.action:
        stmt = stmt.where(col(AuditEntry.action).startswith(filters.action, autoescape=True))
    if filters.outcome:
        stmt = stmt.where(AuditEntry.outcome == filters.outcome)
    if filters.since:
        stmt = stmt.where(col(AuditEntry.at) >= filters.since)
    if filters.until:
        stmt = stmt.where(col(AuditEntry.at) < filters.until)
    if before_id:
        stmt = stmt.where(col(AuditEntry.id) < before_id)
    return list(session.exec(stmt.order_by(col(AuditEntry.id).desc()).limit(limit)).all())
