"""Fixtures of the REST API tests; the app fixtures come from tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_helpers import row_counts
from sqlalchemy.engine import Engine


@pytest.fixture
def counts(app_engine: Engine) -> Callable[[], dict[str, int]]:
    return lambda: row_counts(app_engine)
