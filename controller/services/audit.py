"""The audit log: who changed what, when and from where, in a keyed (HMAC) chain.

Each row's MAC covers its fields and the previous row's MAC, under the audit key
(`auth.audit_key`), so editing a row breaks its own MAC, deleting one breaks the
next row's link, and someone with write access to the database but not the key
cannot recompute the chain. A one-row head record, updated in the same
transaction as each append and MACed under a domain of its own, names the newest
row: removing rows from the end (which leaves a valid chain) is caught there.
Rows are appended by one writer at a time (group commit: rows asked for meanwhile
go in the next transaction; across processes an advisory lock on PostgreSQL, the one
writer on SQLite), so two writers never chain to the same predecessor. A REST change
appends its row in its own transaction instead (ChangeAudit: services/task_commit for
a create, api/change_commit.py for the others), as the CLI's access changes and the
dashboard's actions do (`audited_change`); on SQLite they and the group commit take
turns at the write gate, which each takes before reading the head.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from tme.admin_schemas import AuditEntryPublic as AuditEntryPublic
from tme.controller.store.db import session_scope
from tme.controller.store.group_commit import GroupCommit, by_key
from tme.controller.store.models import utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.security_models import AuditEntry, AuditHead
from tme.errors import Unavailable
from tme.shown_text import shown

_PG_LOCK_ID = 0x746D6561  # "tmea": one advisory lock shared by every controller process

# Local mode without `auth.audit_key` still chains with a key, a public one;
# production refuses to start without a real key (tme/config_secrets.py).
LOCAL_KEY = b"tme-local-audit-key: public, set auth.audit_key"
# Distinct prefixes, so a row's MAC can never pass for a head's, or the reverse.
ROW_DOMAIN = b"tme.audit.row.v1\n"
HEAD_DOMAIN = b"tme.audit.head.v1\n"

_KEYS: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


def audit_key(settings: Any) -> bytes:
    """The audit key of a process's settings (LOCAL_KEY when none is set)."""
    value = str(settings.auth.audit_key.get_secret_value())
    return value.encode() if value else LOCAL_KEY


def use_key(engine: Engine, settings: Any) -> None:
    """Chain rows appended through `engine` with the audit key of `settings`."""
    _KEYS[engine] = audit_key(settings)


@functools.cache
def _configured_key() -> bytes:
    from tme.config import load_settings

    return audit_key(load_settings())


def key_for(engine: Engine) -> bytes:
    """The key given with `use_key`, else the one of the process's configuration."""
    return _KEYS.get(engine) or _configured_key()


def _canonical(entry: AuditEntry | AuditEntryPublic) -> bytes:
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
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str).encode()


def row_mac(entry: AuditEntry | AuditEntryPublic, key: bytes) -> str:
    return hmac.new(key, ROW_DOMAIN + _canonical(entry), hashlib.sha256).hexdigest()


def head_mac(last_id: int, last_hash: str, key: bytes) -> str:
    message = HEAD_DOMAIN + f"{last_id}\n{last_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# Column sizes: longer values are cut to them before a row's MAC is computed.
_SIZES = {"actor": 64, "action": 64, "target": 200, "outcome": 16, "client": 100}


def _cut(fields: dict[str, Any]) -> dict[str, Any]:
    """A control or invisible character (in a path or a login name anyone may send) is
    written as its escape, as a name shows everywhere (tme.shown_text.shown): a NUL as
    `\\x00` (PostgreSQL text cannot hold it, and the row would be lost, the request
    answered 500), a right-to-left override as `\\u202e` (the audit list showed the
    row's words reversed)."""
    return {
        name: shown(value, one_line=True)[: _SIZES[name]] if name in _SIZES else value
        for name, value in fields.items()
    }


def row_fields(
    action: str,
    *,
    actor: str = "",
    target: str = "",
    outcome: str = "ok",
    client: str = "",
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One row's fields as `append_rows` takes them, each text cut to its column."""
    fields = {"actor": actor, "action": action, "target": target, "outcome": outcome}
    return _cut({**fields, "client": client, "details": details or {}})


def record(engine: Engine, action: str, **fields: Any) -> AuditEntryPublic:
    """Append one row (`fields` as `row_fields` takes them) in a transaction of its own,
    move the head to it, and commit both; return once committed. A change that commits
    itself appends its row in its own transaction instead (`append_rows`)."""
    return _APPENDER.submit((engine, row_fields(action, **fields)))


@dataclass
class ChangeAudit:
    """The row an API change will get, known before the route runs but for its outcome.

    A route that commits its change itself appends the row in the change's transaction
    (`fields`, then `append_rows`; api/change_commit.py) and marks it written: the change
    and its row are committed together or not at all. Otherwise (a refused or failed
    request, which changed nothing) the security middleware appends it once the response
    is out, with the status the route answered.
    """

    action: str
    actor: str
    target: str
    client: str
    token_id: int | None
    body_summary: Callable[[], dict[str, Any]]  # the fields the request's body set
    written: bool = False
    written_status: int = 0  # the status the written row says the route answered

    def fields(
        self, status: int, location: str = "", more: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        details: dict[str, Any] = {"status": status, **self.body_summary(), **(more or {})}
        if location:
            details["location"] = location
        if self.token_id is not None:
            details["token_id"] = self.token_id
        return row_fields(
            self.action,
            actor=self.actor,
            target=self.target,
            outcome="ok" if status < 400 else "failed",
            client=self.client,
            details=details,
        )

    def mark_written(self, status: int) -> None:
        """The row, saying the route answered `status`, is committed with the change."""
        self.written, self.written_status = True, status


AUDIT, HEADS = table_of(AuditEntry), table_of(AuditHead)
# Built once: an append is a handful of small statements. The head is read with a
# locking read: on PostgreSQL it locks the row the append then moves; on SQLite it
# takes the write gate (store/sqlite_gate.py) before the head is read, so no other
# writer of this process commits between the read and the append (which would chain
# two rows to one predecessor, and the second fail on its id).
READ_HEAD = select(HEADS.c.last_id, HEADS.c.last_hash).where(HEADS.c.id == 1).with_for_update()
NEWEST_ROW = select(AUDIT.c.id, AUDIT.c.hash).order_by(AUDIT.c.id.desc()).limit(1)
INSERT_ROWS = insert(AUDIT)
INSERT_HEAD = insert(HEADS)
MOVE_HEAD = (
    update(HEADS)
    .where(HEADS.c.id == 1)
    .values(
        last_id=bindparam("b_last_id"), last_hash=bindparam("b_last_hash"), mac=bindparam("b_mac")
    )
)


def lock_chain(connection: Connection) -> None:
    """Serialise appends across controller processes (PostgreSQL; on SQLite the write
    gate, taken by `append_rows`'s locking read of the head, does it). Taken first in a
    transaction that will append, so it is never waited for while holding other locks."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_LOCK_ID})


def append_rows(
    connection: Connection, key: bytes, rows: list[dict[str, Any]]
) -> list[AuditEntryPublic]:
    """Chain `rows` after the newest row in the caller's transaction (which commits
    them), the head naming the last. A log from before the head existed is read for
    its newest row once. Each row gets the next id and its MAC before anything is
    written, computed from the values as they are stored (`record` gives details in
    their JSON form), so the rows go in one INSERT, the head moves, and nothing is
    read back. An id taken meanwhile by another writer fails the INSERT rather than
    forking the chain."""
    lock_chain(connection)
    entries: list[AuditEntryPublic] = []
    head = connection.execute(READ_HEAD).first()
    last = head or connection.execute(NEWEST_ROW).first()
    last_id, previous = (int(last[0]), str(last[1])) if last else (0, "")
    for fields in rows:
        # Details in the form they are stored and read back in (a tuple becomes a
        # list), so the MAC computed here matches the row `verify_chain` reads.
        details = json.loads(json.dumps(fields["details"]))
        last_id += 1
        unsigned = AuditEntryPublic(
            id=last_id,
            at=utcnow(),
            **{**fields, "details": details},
            prev_hash=previous,
            hash="",
        )
        entry = unsigned.model_copy(update={"hash": row_mac(unsigned, key)})
        entries.append(entry)
        previous = entry.hash
    connection.execute(INSERT_ROWS, [entry.model_dump() for entry in entries])
    moved = {"last_id": last_id, "last_hash": previous, "mac": head_mac(last_id, previous, key)}
    if head is None:
        connection.execute(INSERT_HEAD, {"id": 1, **moved})
    else:
        connection.execute(MOVE_HEAD, {f"b_{name}": value for name, value in moved.items()})
    return entries


class RowNotWritten(Unavailable):
    """A change's audit row could not be written: the change was rolled back."""


def row_not_written(action: str, target: str, error: Exception) -> RowNotWritten:
    """What a change whose row `error` kept from being written says (API, dashboard and
    CLI alike): nothing changed, and the database's first line of why."""
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
    return RowNotWritten(
        f"nothing changed: the audit row of {action} {target} cannot be written ({reason})"
    )


@dataclass
class AuditedChange:
    """A change's transaction (`session`) and the key its audit row is chained with."""

    session: Session
    key: bytes
    committed: bool = False

    def commit(self, action: str, **fields: Any) -> AuditEntryPublic:
        """Append the change's row (`fields` as `row_fields` takes them) in its
        transaction and commit both: the change is committed with its row or not at all.
        A row or commit the database refuses raises RowNotWritten (the transaction is
        left to be rolled back)."""
        row = row_fields(action, **fields)
        try:
            [entry] = append_rows(self.session.connection(), self.key, [row])
            self.session.commit()
        except SQLAlchemyError as exc:
            raise row_not_written(action, row["target"], exc) from exc
        self.committed = True
        return entry


@contextmanager
def audited_change(session: Session, key: bytes) -> Iterator[AuditedChange]:
    """The change made in `session`'s transaction, committed with its audit row
    (`AuditedChange.commit`): the CLI's access commands and the dashboard's actions. The
    chain is locked first, as every transaction that appends to it does. A change left
    without `commit` raises, for its caller to roll back: never committed without its row."""
    lock_chain(session.connection())
    change = AuditedChange(session, key)
    yield change
    if not change.committed:
        raise RuntimeError("a change was made without its audit row: call commit()")


def _append_rows(engine: Engine, rows: list[dict[str, Any]]) -> list[AuditEntryPublic]:
    """Append `rows` in a transaction of their own (serialised in-process by the group
    commit below, across processes by `lock_chain`)."""
    with session_scope(engine) as session:
        return append_rows(session.connection(), key_for(engine), rows)


# Group commit: rows asked for while a write is in progress go in the next one, one
# transaction per database; a row that cannot be written fails only its own caller.
_APPENDER: GroupCommit[tuple[Engine, dict[str, Any]], AuditEntryPublic] = GroupCommit(
    by_key(_append_rows)
)


@dataclass(frozen=True)
class ChainProblem:
    entry_id: int
    problem: str


def _row_problem(entry: AuditEntry, key: bytes) -> str | None:
    if hmac.compare_digest(entry.hash, row_mac(entry, key)):
        return None
    plain = hashlib.sha256(_canonical(entry)).hexdigest()
    if hmac.compare_digest(entry.hash, plain):
        return "row edited (MAC mismatch: chained without the audit key)"
    return "row edited (MAC mismatch)"


def _head_signed(head: AuditHead, key: bytes) -> bool:
    return hmac.compare_digest(head.mac, head_mac(head.last_id, head.last_hash, key))


def key_fits(session: Session, key: bytes) -> bool:
    """Whether the log is chained under `key` (its head MACed with it; any key fits a log
    with no head yet): a row appended under another key, by a CLI given another
    `auth.audit_key` than the controller's, would break the chain."""
    head = session.get(AuditHead, 1)
    return head is None or _head_signed(head, key)


def _head_problems(
    head: AuditHead | None, seen: dict[int, str], newest_id: int, key: bytes
) -> list[ChainProblem]:
    if head is None:
        missing = ChainProblem(newest_id, "head record missing: rows may have been removed")
        return [missing] if newest_id else []
    if not _head_signed(head, key):
        return [ChainProblem(head.last_id, "head record edited (MAC mismatch)")]
    if head.last_id not in seen:
        return [ChainProblem(head.last_id, "newest rows removed: the head's row is missing")]
    if seen[head.last_id] != head.last_hash:
        return [ChainProblem(head.last_id, "row differs from the head record")]
    return []


def verify_chain(session: Session, key: bytes, batch: int = 1000) -> tuple[int, list[ChainProblem]]:
    """Check every row and the head; return how many rows were read and what is wrong.

    The head is read first: rows appended while this runs come after it and are
    checked by their MACs like the others.
    """
    head = session.get(AuditHead, 1)
    problems: list[ChainProblem] = []
    seen: dict[int, str] = {}
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
            return count, problems + _head_problems(head, seen, last_id, key)
        for entry in rows:
            entry_id = entry.id or 0
            if entry.prev_hash != previous:
                problems.append(ChainProblem(entry_id, "previous row missing or changed"))
            if (problem := _row_problem(entry, key)) is not None:
                problems.append(ChainProblem(entry_id, problem))
            if head is not None and entry_id == head.last_id:
                seen[entry_id] = entry.hash
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
