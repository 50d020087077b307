"""A PostgreSQL server that refuses writes for now is an outage, as one that does not answer.

After a failover the old primary comes back as a standby; a URL may lead to a standby;
an administrator may set `default_transaction_read_only`. Such a server answers reads
and refuses every write with SQLSTATE 25006 (read_only_sql_transaction), which
psycopg raises as an InternalError: a class that otherwise says a statement is at
fault, so the event consumer took it for a bad batch and requeued its events until
RabbitMQ dead-lettered them, and the API answered 500. Here it is translated once,
where it enters, into the OperationalError every part already treats as the database
being unavailable for a while: the event consumer holds its events and probes, the
API answers 503 with Retry-After, the background loops log it once and go on.

A connection that met it is no use for writing again: its server, or the session
default it was given when it connected, stays read-only. So the engine's pool is
renewed (SQLAlchemy's disconnect handling): connections made afterwards may reach a
writable server (a DNS name or a multi-host URL that moved to the new primary) and take
the database's settings as they are now.
"""

from __future__ import annotations

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, Engine, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError

READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction
# Whether the next transaction may write: a standby's transactions are all read-only,
# whatever default_transaction_read_only says, so this one setting tells both.
WRITABLE = text("SELECT current_setting('transaction_read_only') = 'off'")
ANSWERS = text("SELECT 1")


def install(engine: Engine) -> None:
    """Translate read-only refusals on this (PostgreSQL) engine into OperationalError."""
    event.listen(engine, "handle_error", _as_outage, retval=True)


def _as_outage(context: ExceptionContext) -> BaseException | None:
    original = context.original_exception
    if _sqlstate(original) != READ_ONLY_SQLSTATE:
        return None
    context.is_disconnect = True  # the pool is renewed (see the module's docstring)
    wrapped = context.sqlalchemy_exception
    return OperationalError(
        context.statement,
        context.parameters,
        original,
        hide_parameters=wrapped.hide_parameters if wrapped is not None else True,
        connection_invalidated=True,
    )


def refuses_writes(error: BaseException) -> bool:
    """Whether `error` is a server refusing a write because it is read-only."""
    orig = error.orig if isinstance(error, DBAPIError) else error
    return _sqlstate(orig) == READ_ONLY_SQLSTATE


def takes_writes(connection: Connection) -> bool:
    """Whether the database behind `connection` would take a write now (SQLite: whether
    it answers). A connection found read-only is dropped, so the next look connects
    afresh and finds the database as it is then."""
    if connection.dialect.name != "postgresql":
        connection.execute(ANSWERS)
        return True
    if connection.execute(WRITABLE).scalar():
        return True
    connection.invalidate()
    return False


def _sqlstate(error: BaseException | None) -> str | None:
    # psycopg names it sqlstate, psycopg2 pgcode
    return getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
