"""/metrics through a PostgreSQL outage: what the controller itself knows (results
held, its loops failing, the scheduler lease) is what an operator needs then, so a
scraper whose token this controller checked before still reads it; nothing else is
answered without the database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from test_database_outage import Database

from tme.config import Settings
from tme.controller.api.principal_cache import PrincipalCache
from tme.controller.app import create_app
from tme.controller.services.bootstrap import make_user_with_token

pytestmark = pytest.mark.external_service


@pytest.fixture
def database(postgres_database_url: str) -> Iterator[Database]:
    db = Database(postgres_database_url)
    yield db
    db.close()


def _samples(text: str) -> dict[str, float]:
    families = text_string_to_metric_families(text)
    return {s.name: s.value for family in families for s in family.samples if not s.labels}


def test_a_known_scraper_reads_the_metrics_while_the_database_is_down(
    database: Database,
) -> None:
    def token(name: str) -> str:
        made = make_user_with_token(database.engine, f"{name}-{uuid.uuid4().hex[:8]}", "viewer")
        return made.token

    scraper, stranger, revoked = token("scraper"), token("stranger"), token("revoked")
    settings = Settings(broker={"url": "memory://"})
    app = create_app(settings, engine=database.engine)
    app.state.principals = PrincipalCache(ttl_s=0)  # each request checks its token
    with TestClient(app, headers={"Authorization": f"Bearer {scraper}"}) as client:
        before = client.get("/metrics")
        assert before.status_code == 200 and _samples(before.text)["tme_database_up"] == 1
        by_revoked = {"Authorization": f"Bearer {revoked}"}
        assert client.get("/metrics", headers=by_revoked).status_code == 200
        _revoke_elsewhere(database, revoked)  # `tme token revoke` on another host
        assert client.get("/metrics", headers=by_revoked).status_code == 401
        database.go_away()
        try:
            during = client.get("/metrics")
            other_route = client.get("/api/v1/tasks")
            unknown = client.get("/metrics", headers={"Authorization": f"Bearer {stranger}"})
            refused_before = client.get("/metrics", headers=by_revoked)
        finally:
            database.come_back()
    assert during.status_code == 200, during.text
    samples = _samples(during.text)
    assert samples["tme_database_up"] == 0
    assert "tme_events_held" in samples and "tme_scheduler_leader" in samples
    assert "tme_queue_depth" not in samples  # read from the database: left out
    assert other_route.status_code == 503
    assert unknown.status_code == 503  # never checked: nothing stands in for it
    assert refused_before.status_code == 503  # refused since: forgotten


def _revoke_elsewhere(database: Database, token: str) -> None:
    """Revoke a token as another process does: a commit this process does not see."""
    key_id = token.split("_")[1]
    with database.engine.begin() as connection:
        connection.execute(
            text("UPDATE api_tokens SET revoked_at = now() WHERE key_id = :key"), {"key": key_id}
        )
