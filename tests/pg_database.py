"""A PostgreSQL database of a test's own, and the faults a test injects into it: its
connections ended (a failover, an administrator), or it made read-only (a primary
demoted to a standby, a URL that leads to a standby, an administrator's switch)."""

from __future__ import annotations

import uuid
from typing import Any

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class PgDatabase:
    """Created by `create`, dropped by `drop` with its connections."""

    def __init__(self) -> None:
        self.name = f"tme_chaos_{uuid.uuid4().hex[:12]}"
        self.port = 5432

    def url(self, port: int | None = None) -> str:
        """The database's URL, directly or (`port`) through a relay on this host."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{self.name}"

    def create(self) -> None:
        _admin(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        _admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def terminate_backends(self) -> int:
        """End every connection to this database but the asking one (as a failover or
        an administrator does); how many were ended."""
        import psycopg

        with psycopg.connect(self.url().replace("+psycopg", ""), autocommit=True) as conn:
            ended = conn.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))"
                " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            ).fetchone()
        return int(ended[0]) if ended else 0

    def refuse_writes(self) -> None:
        """Make the database read-only, as a primary demoted to a standby is: every
        connection made from now on refuses writes (SQLSTATE 25006), and the open
        ones are ended (a demotion restarts the server)."""
        _admin(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on')
        self.terminate_backends()

    def take_writes(self) -> None:
        """Writable again, for the connections made from now on; the open ones stay
        read-only (their session's default was set when they connected), as after an
        administrator's `ALTER DATABASE ... RESET`."""
        _admin(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')


def _admin(statement: Any) -> None:
    import psycopg

    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(statement)
