"""Login (rate limit, same answer for any wrong credential) and what site grants hide."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from security_helpers import SITE_A, SITE_B, create_task
from sqlmodel import select

from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.login_limit import (
    AUDITED_PER_MINUTE,
    SPREAD,
    LoginLimiter,
    RefusalAudit,
)
from tme.controller.store.db import session_scope
from tme.controller.store.security_models import AuditEntry


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    from tme.config import Settings

    return Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        auth={"login_attempts_per_minute": 3},
    )


def _login(client: TestClient, username: str, password: str) -> int:
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/login", json=body).status_code


def test_login_is_limited_per_user(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app_engine, "frank", "viewer")
    assert [_login(anonymous, "frank", "wrong-password") for _ in range(3)] == [401] * 3
    response = anonymous.post(
        "/api/v1/auth/login", json={"username": "frank", "password": creds.password}
    )
    assert response.status_code == 429  # even the right password waits
    assert int(response.headers["retry-after"]) >= 1
    assert _login(anonymous, "nobody", "wrong-password") == 429  # same client address
    with session_scope(app_engine) as session:
        actions = [e.action for e in session.exec(select(AuditEntry))]
    assert actions.count("auth.login_failed") == 3 and "auth.login_limited" in actions


def test_one_address_guessing_a_password_does_not_lock_the_user_out_of_another(
    anonymous, app
) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app.state.engine, "gina", "viewer")
    assert [_login(anonymous, "gina", "guess") for _ in range(4)] == [401] * 3 + [429]
    with TestClient(app, client=("10.1.2.3", 50000)) as elsewhere:
        assert _login(elsewhere, "gina", creds.password) == 200


def test_limiter_counts_address_user_per_address_and_user_from_all() -> None:
    now = [0.0]
    limiter = LoginLimiter(2, clock=lambda: now[0])
    assert limiter.allow("u", "1.1.1.1") is None
    assert limiter.allow("U", "1.1.1.1") is None  # a user name's case does not count
    assert limiter.allow("u", "1.1.1.1") is not None  # the address's limit
    assert limiter.allow("u", "2.2.2.2") is None  # the user from another address
    assert limiter.allow("v", "4.4.4.4") is None
    assert limiter.allow("w", "4.4.4.4") is None
    assert limiter.allow("x", "4.4.4.4") is not None  # the address's limit, any user
    now[0] = 61.0
    assert limiter.allow("u", "1.1.1.1") is None  # a minute later


def test_a_user_guessed_from_many_addresses_is_limited_at_spread_times_the_limit() -> None:
    now = [0.0]
    limiter = LoginLimiter(2, clock=lambda: now[0])
    allowed = [limiter.allow("u", f"10.0.0.{i}") is None for i in range(2 * SPREAD + 3)]
    assert allowed == [True] * (2 * SPREAD) + [False] * 3
    assert limiter.allow("v", "10.0.0.1") is None  # another user from those addresses


def test_limiter_forgets_names_idle_for_a_minute() -> None:
    """Guessing with a new user name each time must not grow memory for good."""
    now = [0.0]
    limiter = LoginLimiter(3, clock=lambda: now[0])
    for i in range(1000):
        limiter.allow(f"random-{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(limiter._window) == 3000  # the address, the name at it, the name anywhere
    now[0] = 61.0
    limiter.allow("one-more", "10.9.9.9")
    assert len(limiter._window) == 3


def test_refusals_are_audited_up_to_a_budget_per_client_then_counted() -> None:
    now = [0.0]
    budget = RefusalAudit(3, clock=lambda: now[0])
    assert [budget.admit("1.1.1.1") for _ in range(5)] == [0, 0, 0, None, None]
    assert budget.admit("2.2.2.2") == 0  # each client has its own
    now[0] = 61.0
    assert budget.admit("1.1.1.1") == 2  # the next audited one says what went unrecorded
    assert budget.admit("1.1.1.1") == 0


def test_a_bad_token_loop_cannot_grow_the_audit_log_without_bound(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    headers = {"Authorization": "Bearer tme_0000000000000000_not-a-real-secret"}
    for _ in range(AUDITED_PER_MINUTE + 20):
        assert anonymous.get("/api/v1/tasks", headers=headers).status_code == 401
    with session_scope(app_engine) as session:
        refused = session.exec(
            select(AuditEntry).where(AuditEntry.action == "auth.token_refused")
        ).all()
    assert len(refused) == AUDITED_PER_MINUTE


def test_unknown_user_and_wrong_password_answer_alike(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    make_user_with_token(app_engine, "gina", "viewer")
    a = anonymous.post("/api/v1/auth/login", json={"username": "gina", "password": "nope-nope"})
    b = anonymous.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope-nope"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()


def test_site_grants_hide_and_refuse(anonymous, admin_token, make_token) -> None:  # type: ignore[no-untyped-def]
    admin = {"Authorization": f"Bearer {admin_token}"}
    mine, theirs = create_task(anonymous, admin, SITE_A), create_task(anonymous, admin, SITE_B)
    siteless = create_task(anonymous, admin, None)
    operator = {"Authorization": f"Bearer {make_token('operator', SITE_A)}"}
    listed = {t["id"] for t in anonymous.get("/api/v1/tasks", headers=operator).json()["items"]}
    assert listed == {mine["id"]}
    legacy = {t["id"] for t in anonymous.get("/tasks/", headers=operator).json()}
    assert legacy == {mine["id"]}
    for task in (theirs, siteless):
        assert anonymous.get(f"/api/v1/tasks/{task['id']}", headers=operator).status_code == 404
        assert anonymous.delete(f"/task/{task['id']}", headers=operator).status_code == 404
    run = theirs["latest_run_id"]
    assert anonymous.get(f"/api/v1/runs/{run}", headers=operator).status_code == 404
    assert anonymous.post("/tasks/create", json={"name": "x"}, headers=operator).status_code == 403
    other = {"name": "x", "target": {"site": SITE_B}}
    assert anonymous.post("/api/v1/tasks", json=other, headers=operator).status_code == 403
    moved = anonymous.patch(
        f"/api/v1/tasks/{mine['id']}", json={"target": {"site": SITE_B}}, headers=operator
    )
    assert moved.status_code == 403
    scheduled = {"name": "x", "target": {"site": SITE_A}, "schedule": {"every_s": 60}}
    assert anonymous.post("/api/v1/tasks", json=scheduled, headers=operator).status_code == 403
    ok = anonymous.post(
        "/api/v1/tasks", json={**other, "target": {"site": SITE_A}}, headers=operator
    )
    assert ok.status_code == 201
    viewer = {"Authorization": f"Bearer {make_token('viewer', SITE_A)}"}
    assert anonymous.post("/api/v1/tasks", json={"name": "x"}, headers=viewer).status_code == 403


def test_fleet_lists_show_only_granted_sites(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    from tme.controller.event_apply import apply_presence
    from tme.protocol import Presence

    with session_scope(app_engine) as session:
        for site in (SITE_A, SITE_B):
            apply_presence(
                session,
                Presence(
                    site=site,
                    agent="skid",
                    state="online",
                    devices=[{"name": "pump1", "points": []}],
                ),
            )
    creds = make_user_with_token(app_engine, "olga", "operator", [SITE_A])
    headers = {"Authorization": f"Bearer {creds.token}"}
    for path in ("/api/v1/sites", "/api/v1/agents", "/api/v1/devices"):
        rows = anonymous.get(path, headers=headers).json()
        sites = {row.get("site", row.get("name")) for row in rows}
        assert sites == {SITE_A}, (path, rows)
