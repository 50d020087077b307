"""Tests run on both stores: SQLite (a file of the test's own) and PostgreSQL (marked
external_service: off CI it skips when the server is absent, with CI=true it fails)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tme.controller.store.db import make_engine, upgrade

DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.external_service),
]


def upgraded_engine(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> Engine:
    """An upgraded database of the dialect `request.param`: a new SQLite file `name`, or
    the session's PostgreSQL test database (the caller empties what it needs empty)."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path}/{name}.db")
    else:
        made = make_engine(request.getfixturevalue("postgres_database_url"))
    upgrade(made)
    return made
