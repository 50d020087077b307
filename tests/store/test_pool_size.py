"""`database.pool_size` is the number of connections the controller keeps open to a
server database. It was documented and read, then ignored: the engine kept 10 whatever
it said."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.store.db import make_engine, upgrade


@pytest.mark.external_service
def test_the_controller_keeps_the_configured_pool(postgres_database_url: str) -> None:
    ready = make_engine(postgres_database_url)
    upgrade(ready)
    ready.dispose()
    settings = Settings(
        database={"url": postgres_database_url, "pool_size": 3}, broker={"url": "memory://"}
    )
    app = create_app(settings, runtime=False)
    with TestClient(app):
        assert app.state.engine.pool.size() == 3
