"""Fixtures of the scheduling tests: a store with the services, no runtime threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dialects import DIALECTS, upgraded_engine
from sqlalchemy.engine import Engine
from sqlmodel import Session


@pytest.fixture
def engine(tmp_path: Path, fresh_sqlite: Callable[[Path], Engine]) -> Iterator[Engine]:
    engine = fresh_sqlite(tmp_path / "sched.db")
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture(params=DIALECTS)
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An upgraded database of each dialect."""
    made = upgraded_engine(request, tmp_path, "race")
    yield made
    made.dispose()
