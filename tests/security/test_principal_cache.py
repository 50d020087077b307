"""A bearer token resolved a moment ago is answered without the database; any token or
user change committed in this process forgets it at once, one made by another process
within the cache's TTL; a resolution older than the last change is never kept."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import select

from tme.controller.api import enforce
from tme.controller.api.principal_cache import PrincipalCache
from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.roles import Principal, Role
from tme.controller.services.users import get_user
from tme.controller.store.db import session_scope
from tme.controller.store.models import utcnow
from tme.controller.store.security_models import ApiToken


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the middleware resolved from the database."""
    seen: list[str] = []
    resolve = enforce.resolve_token

    def counting(session: Any, value: str, **kwargs: Any) -> Principal:
        seen.append(value)
        return resolve(session, value, **kwargs)

    monkeypatch.setattr(enforce, "resolve_token", counting)
    return seen


def _get(client: TestClient, token: str) -> int:
    return client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code


def test_a_token_is_read_from_the_database_once_within_the_ttl(
    anonymous, app_engine, lookups
) -> None:  # type: ignore[no-untyped-def]
    token = make_user_with_token(app_engine, "alice", "viewer").token
    assert [_get(anonymous, token) for _ in range(3)] == [200, 200, 200]
    assert lookups == [token]
    anonymous.app.state.principals.ttl_s = 0.0  # every resolution is too old now
    assert _get(anonymous, token) == 200
    assert lookups == [token, token]


def test_a_revoke_or_a_disabled_user_in_this_process_counts_at_once(
    anonymous, app_engine, lookups
) -> None:  # type: ignore[no-untyped-def]
    alice = make_user_with_token(app_engine, "alice", "viewer").token
    bob = make_user_with_token(app_engine, "bob", "viewer").token
    assert _get(anonymous, alice) == 200 and _get(anonymous, bob) == 200
    with session_scope(app_engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.key_id == alice.split("_")[1])).one()
        row.revoked_at = utcnow()
        session.add(row)
    assert _get(anonymous, alice) == 401
    with session_scope(app_engine) as session:
        user = get_user(session, "bob")
        user.disabled = True
        session.add(user)
    assert _get(anonymous, bob) == 401


def test_a_revoke_by_another_process_counts_once_the_ttl_has_passed(
    anonymous, app_engine, lookups
) -> None:  # type: ignore[no-untyped-def]
    token = make_user_with_token(app_engine, "alice", "viewer").token
    assert _get(anonymous, token) == 200
    with app_engine.begin() as connection:  # as `tme token revoke` does from its own process
        connection.execute(
            text("UPDATE api_tokens SET revoked_at = :now WHERE key_id = :key_id"),
            {"now": utcnow().isoformat(" "), "key_id": token.split("_")[1]},
        )
    anonymous.app.state.principals.ttl_s = 0.0
    assert _get(anonymous, token) == 401


def test_a_resolution_older_than_the_last_change_is_not_kept() -> None:
    cache = PrincipalCache(ttl_s=60.0)
    principal = Principal(user_id=1, username="alice", role=Role.viewer, sites=("*",))
    read_at = time.monotonic()  # the database was read here ...
    cache.clear()  # ... then a revoke committed ...
    cache.put("tme_a_b", principal, read_at)  # ... and the read's answer arrives
    assert cache.get("tme_a_b") is None
    cache.put("tme_a_b", principal, time.monotonic())
    assert cache.get("tme_a_b") == principal
