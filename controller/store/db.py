"""Database engine, sessions and the schema check.

The controller refuses to start on an out-of-date schema; `tme db upgrade`
applies the migrations (Alembic), and `tme demo` upgrades by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import make_transient_to_detached
from sqlmodel import Session, create_engine

from tme.controller.store import read_only, sqlite_gate
from tme.errors import SchemaOutOfDate

T = TypeVar("T")
NOTES = "tme.new"  # session.info key of `remember_new`

MIGRATIONS = Path(__file__).with_name("migrations")
# A server database that takes the connection and never answers (hung, or a proxy in
# front of a lost one) is given up on after this long: the API answers 503 and the
# event consumer holds its events, instead of every thread waiting for ever (a stop
# too). A URL's own `?connect_timeout=` wins.
CONNECT_TIMEOUT_S = 10
# A connection whose peer stops answering mid-way (a link that drops packets, a host
# that died without closing anything) is given up on within this long
# (`database.tcp_timeout_s`), instead of a query waiting on TCP for many minutes:
# keepalives find a silent peer of a connection that waits for an answer, and
# tcp_user_timeout ends one whose data the peer never acknowledges. A slow query on a
# live server is not affected (its host answers the keepalives and acknowledges).
TCP_TIMEOUT_S = 30
KEEPALIVE_PROBES = 3  # unanswered probes, tcp_timeout_s/6 apart, before the link is dead
LIBPQ_DRIVERS = ("psycopg", "psycopg2")  # the drivers that hand libpq these settings
# Server connections kept open per engine (`database.pool_size`), and how many more a
# burst may open for a while: the API's worker threads, the event consumer, the
# dispatcher, the scheduler and the notifier each hold one at times.
POOL_SIZE = 10
MAX_OVERFLOW = 20


def make_engine(
    url: str,
    *,
    echo: bool = False,
    pool_size: int = POOL_SIZE,
    tcp_timeout_s: int = TCP_TIMEOUT_S,
) -> Engine:
    """Build the engine for a database URL (SQLite file, SQLite memory or PostgreSQL)."""
    parsed = make_url(url)
    # A statement's values stay out of error texts and logs: they may be secrets (a
    # webhook's key, a password hash) and errors are logged and sometimes shown.
    kwargs: dict[str, Any] = {"echo": echo, "hide_parameters": True}
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        sqlite_gate.install(engine)
        return engine
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        url = str(parsed.set(drivername="postgresql+psycopg"))
    # A connection found dead is dropped from the pool; one that died while pooled is
    # found by the ping at checkout.
    kwargs.update(pool_pre_ping=True, pool_size=pool_size, max_overflow=MAX_OVERFLOW)
    if parsed.get_backend_name() == "postgresql":
        connect_args = {"connect_timeout": CONNECT_TIMEOUT_S}
        if parsed.get_driver_name() in LIBPQ_DRIVERS:
            connect_args.update(tcp_timeouts(tcp_timeout_s))
        # What the URL sets wins (connect_args would override it).
        kwargs["connect_args"] = {k: v for k, v in connect_args.items() if k not in parsed.query}
    engine = create_engine(url, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        read_only.install(engine)  # a read-only server is an outage, not a bad statement
    return engine


def tcp_timeouts(tcp_timeout_s: int) -> dict[str, int]:
    """libpq's TCP settings that end a connection to a silent peer within about
    `tcp_timeout_s`: keepalives after a third of it idle, then every sixth; and the
    kernel's limit on data left unacknowledged (which also ends the keepalives)."""
    return {
        "keepalives": 1,
        "keepalives_idle": max(1, tcp_timeout_s // 3),
        "keepalives_interval": max(1, tcp_timeout_s // 6),
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": tcp_timeout_s * 1000,
    }


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the dashboard read while the event consumer writes; foreign keys
    # make deleting a task delete its runs, as on PostgreSQL. FULL syncs the WAL at
    # each commit: what the controller answered (a 201, an event acked to RabbitMQ, a
    # dispatch recorded) survives a power cut, as on PostgreSQL; NORMAL could lose the
    # last commits, and an agent's result the broker no longer holds would be gone.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One transaction: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def keep_loaded(session: Session, objects: Iterable[Any]) -> None:
    """Hold objects loaded ahead for a batch in the session for its lifetime.

    The identity map references objects weakly: rows read only to warm it are
    dropped at once, and each later `session.get` becomes a query (and a flush).
    """
    session.info.setdefault("tme.kept", []).extend(objects)


def adopt_written(session: Session, objects: Iterable[Any]) -> None:
    """Objects whose rows this transaction wrote with Core statements, each with its
    primary key set: put in the session as loaded and unchanged, so `session.get` finds
    them without a query, and a commit writes nothing more for them."""
    kept = list(objects)
    for obj in kept:
        make_transient_to_detached(obj)
        session.add(obj)
    keep_loaded(session, kept)


def remember_new(session: Session, key: Any, obj: Any) -> None:
    """Note an object added in this transaction under its primary key, so `find` sees it
    before any flush (`session.get` finds only what was flushed, flushing to look).

    The notes end with the transaction (commit or rollback): what a rolled-back
    transaction added must never be found, and after a commit `session.get` finds it
    in the identity map, where `keep_loaded` holds it.
    """
    keep_loaded(session, [obj])
    notes = session.info.get(NOTES)
    if notes is None:
        notes = session.info[NOTES] = {}
        event.listen(session, "after_transaction_end", _forget_notes, once=True)
    notes[(type(obj), key)] = obj


def _forget_notes(session: Session, _transaction: Any) -> None:
    session.info.pop(NOTES, None)


def noted(session: Session, model: type[T], key: Any) -> T | None:
    """The object `remember_new` noted in this transaction under this key, if any."""
    found: T | None = session.info.get(NOTES, {}).get((model, key))
    return found


def find(session: Session, model: type[T], key: Any) -> T | None:
    """`session.get`, answered without a query or a flush for an object `remember_new`
    noted in this transaction."""
    found = noted(session, model, key)
    return found if found is not None else session.get(model, key)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def _label(revisions: tuple[str, ...]) -> str | None:
    return "+".join(sorted(revisions)) or None


def head_revision() -> str:
    """The newest revision(s) of the migrations ("a+b" while two branches stand side by side)."""
    heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    label = _label(tuple(heads))
    assert label is not None
    return label


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return _label(tuple(MigrationContext.configure(connection).get_current_heads()))


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Apply the migrations up to `revision`; refuse a database newer than this code."""
    _refuse_newer(current_revision(engine), head_revision())
    command.upgrade(alembic_config(engine), revision)


def check_schema(engine: Engine) -> None:
    """Raise SchemaOutOfDate unless the database is at the newest migration(s)."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        _refuse_newer(current, head)
        where = "empty" if current is None else f"at revision {current}"
        raise SchemaOutOfDate(
            f"the database schema is {where}, this TME needs {head}: run `tme db upgrade`",
            details={"current": current, "head": head},
        )


def _refuse_newer(current: str | None, head: str) -> None:
    """Raise SchemaOutOfDate when the database is at a revision these migrations do not
    know: a newer TME upgraded it, and `tme db upgrade` here cannot help (Alembic would
    only say it cannot locate the revision)."""
    if current is None:
        return
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if any(revision not in known for revision in current.split("+")):
        raise SchemaOutOfDate(
            f"the database schema is at revision {current}, newer than this TME ({head}):"
            " run a TME at least as new as the database",
            details={"current": current, "head": head},
        )
