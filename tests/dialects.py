"""Tests run on both stores: SQLite (a file of the test's own) and PostgreSQL (marked
external_service: off CI it skips when the server is absent, with CI=true it fails)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tme.controller.store.db import make_engine

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.external_service),
]


def upgraded_engine(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Engine:
    """An upgraded database of the dialect `request.param`: a new SQLite file `name` (a
    copy of the session's upgraded one), or the session's PostgreSQL test database,
    upgraded once (the caller empties what it needs empty)."""
    if request.param == "sqlite":
        fresh_sqlite: Callable[[Path], Engine] = request.getfixturevalue("fresh_sqlite")
        return fresh_sqlite(tmp_path / f"{name}.db")
    return make_engine(request.getfixturevalue("upgraded_postgres"))
