"""The controller's SQLite database keeps what the controller answered through a power
cut: each commit syncs the write-ahead log (synchronous=FULL), as PostgreSQL's commit
does. With NORMAL, the last commits before a power cut roll back: a task answered 201,
or an agent's result acked to RabbitMQ (which then no longer holds it), would be gone."""

from __future__ import annotations

from pathlib import Path

from tme.controller.store.db import make_engine, upgrade

FULL = 2  # PRAGMA synchronous: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA


def test_every_connection_syncs_each_commit(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/tme.db")
    upgrade(engine)
    with engine.connect() as first, engine.connect() as second:  # two pooled connections
        for connection in (first, second):
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == FULL
    engine.dispose()
