"""Token attacks (expired, revoked, tampered, wrong type or scheme), token limits,
and dashboard sessions (cookie reads only, logout ends it, other sites refused)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from security_helpers import SITE_A, SITE_B
from sqlmodel import select

from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.sessions import SESSION_COOKIE
from tme.controller.services.tokens import issue_token, resolve_token
from tme.controller.services.users import get_user
from tme.controller.store.db import session_scope
from tme.controller.store.models import utcnow
from tme.controller.store.security_models import ApiToken, AuditEntry
from tme.errors import AuthError, Forbidden


def _status(client: TestClient, token: str, path: str = "/api/v1/tasks") -> int:
    return client.get(path, headers={"Authorization": f"Bearer {token}"}).status_code


def test_expired_revoked_and_tampered_tokens_are_refused(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app_engine, "alice", "viewer")
    assert _status(anonymous, creds.token) == 200
    key_id, secret = creds.token.split("_", 2)[1:]
    flipped = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert _status(anonymous, f"tme_{key_id}_{flipped}") == 401  # tampered secret
    assert _status(anonymous, f"tme_{'0' * 16}_{secret}") == 401  # unknown key id
    assert _status(anonymous, creds.token + "x") == 401
    with session_scope(app_engine) as session:
        user = get_user(session, "alice")
        expired = issue_token(session, user, "old", ttl=timedelta(seconds=-1)).value
    assert _status(anonymous, expired) == 401
    with session_scope(app_engine) as session:
        row = session.exec(select(ApiToken).where(ApiToken.key_id == key_id)).one()
        row.revoked_at = utcnow()
        session.add(row)
    response = anonymous.get("/api/v1/tasks", headers={"Authorization": f"Bearer {creds.token}"})
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]
    with session_scope(app_engine) as session:
        reasons = [
            e.details["reason"]
            for e in session.exec(select(AuditEntry).where(AuditEntry.outcome == "refused"))
        ]
    assert {"unknown token", "expired token", "revoked token"} <= set(reasons)


@pytest.mark.parametrize(
    "header",
    ["Basic YWRtaW46YWRtaW4=", "Token {token}", "Bearer", "Bearer ", "{token}", "bearer{token}"],
)
def test_wrong_scheme_is_refused(anonymous, admin_token, header: str) -> None:  # type: ignore[no-untyped-def]
    value = header.format(token=admin_token)
    response = anonymous.get("/api/v1/tasks", headers={"Authorization": value})
    assert response.status_code == 401


def test_cookie_and_token_are_not_interchangeable(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app_engine, "bob", "viewer")
    login = anonymous.post(
        "/api/v1/auth/login", json={"username": "bob", "password": creds.password}
    )
    cookie = login.cookies[SESSION_COOKIE]
    anonymous.cookies.clear()
    assert _status(anonymous, cookie) == 401  # a signed cookie value is the wrong type
    anonymous.cookies.set(SESSION_COOKIE, creds.token)  # an API token is not a signed cookie
    assert anonymous.get("/api/v1/tasks").status_code == 401


def test_token_never_above_its_user(app_engine) -> None:  # type: ignore[no-untyped-def]
    make_user_with_token(app_engine, "carol", "operator", SITE_A)
    with session_scope(app_engine) as session:
        carol = get_user(session, "carol")
        with pytest.raises(Forbidden):
            issue_token(session, carol, "x", ttl=timedelta(days=1), role="admin")
        with pytest.raises(Forbidden):
            issue_token(session, carol, "x", ttl=timedelta(days=1), sites=f"{SITE_A},{SITE_B}")
        with pytest.raises(Forbidden):
            issue_token(session, carol, "x", ttl=timedelta(days=1), sites="*")
        viewer = issue_token(session, carol, "read only", ttl=timedelta(days=1), role="viewer")
        principal = resolve_token(session, viewer.value)
    assert principal.role == "viewer" and principal.sites == (SITE_A,)


def test_disabled_user_loses_tokens(app_engine) -> None:  # type: ignore[no-untyped-def]
    from tme.controller.services.users import disable_user

    creds = make_user_with_token(app_engine, "dave", "viewer")
    with session_scope(app_engine) as session:
        disable_user(session, "dave")
    with session_scope(app_engine) as session, pytest.raises(AuthError):
        resolve_token(session, creds.token)


def test_session_cookie_reads_but_never_writes(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    creds = make_user_with_token(app_engine, "erin", "admin")
    login = anonymous.post(
        "/api/v1/auth/login", json={"username": "erin", "password": creds.password}
    )
    assert login.status_code == 200, login.text
    set_cookie = login.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    assert anonymous.get("/api/v1/auth/me").json()["username"] == "erin"
    assert anonymous.get("/openapi.json").status_code == 200
    assert anonymous.get("/docs").status_code == 200
    assert anonymous.post("/api/v1/tasks", json={"name": "x"}).status_code == 401
    cross = anonymous.get("/api/v1/tasks", headers={"Origin": "https://evil.example"})
    assert cross.status_code == 401
    bearer = {"Authorization": f"Bearer {login.json()['token']}"}
    assert anonymous.get("/api/v1/tasks", headers=bearer).status_code == 200
    assert anonymous.post("/api/v1/auth/logout").status_code == 204
    anonymous.cookies.set(SESSION_COOKIE, login.cookies[SESSION_COOKIE])
    assert anonymous.get("/api/v1/tasks").status_code == 401  # the session token is revoked
    assert anonymous.get("/api/v1/tasks", headers=bearer).status_code == 401


def test_forged_and_stale_cookies_are_refused(anonymous, app) -> None:  # type: ignore[no-untyped-def]
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("not the key", salt="tme.session").dumps("tme_x_y")
    anonymous.cookies.set(SESSION_COOKIE, forged)
    assert anonymous.get("/api/v1/tasks").status_code == 401
    anonymous.cookies.set(SESSION_COOKIE, "garbage")
    assert anonymous.get("/docs").status_code == 401


def test_docs_and_schema_need_credentials(anonymous) -> None:  # type: ignore[no-untyped-def]
    for path in ("/docs", "/openapi.json", "/redoc", "/no/such/path"):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/readyz").status_code == 200  # for orchestrators


def test_credentials_presented_the_wrong_way_are_audited(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    """A session cookie sent with a change (what another site's page can make a logged-in
    browser send), a cross-site read with it, and an Authorization header of another
    scheme are refused and written to the audit log, as a bad token is."""
    creds = make_user_with_token(app_engine, "faye", "admin")
    login = anonymous.post(
        "/api/v1/auth/login", json={"username": "faye", "password": creds.password}
    )
    assert login.status_code == 200, login.text
    assert anonymous.post("/api/v1/tasks", json={"name": "x"}).status_code == 401
    cross = anonymous.get("/api/v1/tasks", headers={"Origin": "https://evil.example"})
    assert cross.status_code == 401
    anonymous.cookies.clear()
    basic = anonymous.delete("/api/v1/tasks/1", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401
    with session_scope(app_engine) as session:
        rows = session.exec(
            select(AuditEntry)
            .where(AuditEntry.action == "auth.token_refused")
            .order_by(AuditEntry.id)  # type: ignore[arg-type]
        ).all()
    assert [(r.target, r.outcome, r.details["credential"], r.details["reason"]) for r in rows] == [
        (
            "POST /api/v1/tasks",
            "refused",
            "session cookie",
            "a session cookie only reads; changes need a bearer token",
        ),
        ("GET /api/v1/tasks", "refused", "session cookie", "cross-site request refused"),
        (
            "DELETE /api/v1/tasks/1",
            "refused",
            "authorization header",
            "use Authorization: Bearer <token>",
        ),
    ]


def test_logging_out_an_api_token_is_refused_and_it_stays_valid(anonymous, app_engine) -> None:  # type: ignore[no-untyped-def]
    """Log out ends a session; an API token is none. A 204 told a script its token was
    revoked while it stayed valid: it is a 409 saying how to revoke it."""
    creds = make_user_with_token(app_engine, "gus", "operator")
    bearer = {"Authorization": f"Bearer {creds.token}"}
    answer = anonymous.post("/api/v1/auth/logout", headers=bearer)
    assert answer.status_code == 409, answer.text
    assert "tme token revoke" in answer.json()["error"]["message"]
    assert anonymous.get("/api/v1/auth/me", headers=bearer).status_code == 200
