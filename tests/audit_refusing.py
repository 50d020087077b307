"""A database that refuses every audit row, for tests of changes committed with theirs."""

from __future__ import annotations

from tme.controller.store.db import make_engine


class AuditLogRefusing:
    """A trigger that makes the database refuse every audit row, as a full disk or a
    lost connection would fail its INSERT (the change's own rows still go in)."""

    SQLITE = [
        "CREATE TRIGGER refuse_audit_rows BEFORE INSERT ON audit_log"
        " BEGIN SELECT RAISE(ABORT, 'audit log refuses rows'); END"
    ]
    POSTGRESQL = [
        "CREATE FUNCTION refuse_audit_rows() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION 'audit log refuses rows'; END $$",
        "CREATE TRIGGER refuse_audit_rows BEFORE INSERT ON audit_log"
        " FOR EACH ROW EXECUTE FUNCTION refuse_audit_rows()",
    ]
    UNDO = {
        "sqlite": ["DROP TRIGGER refuse_audit_rows"],
        "postgresql": [
            "DROP TRIGGER refuse_audit_rows ON audit_log",
            "DROP FUNCTION refuse_audit_rows()",
        ],
    }

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.dialect = self.engine.dialect.name

    def __enter__(self) -> None:
        self._run(self.SQLITE if self.dialect == "sqlite" else self.POSTGRESQL)

    def __exit__(self, *exc: object) -> None:
        self._run(self.UNDO[self.dialect])  # the session's PostgreSQL database is shared
        self.engine.dispose()

    def _run(self, statements: list[str]) -> None:
        with self.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)
