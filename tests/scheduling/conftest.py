"""Fixtures of the scheduling tests: a store with the services, no runtime threads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.store.db import make_engine, upgrade


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path}/sched.db")
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


DIALECTS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgresql", id="postgresql", marks=pytest.mark.external_service),
]


@pytest.fixture(params=DIALECTS)
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An upgraded database of each dialect."""
    if request.param == "sqlite":
        made = make_engine(f"sqlite:///{tmp_path}/race.db")
    else:
        made = make_engine(request.getfixturevalue("postgres_database_url"))
    upgrade(made)
    yield made
    made.dispose()
