"""Dashboard sessions: a login makes a short-lived session token; the cookie carries
it signed (itsdangerous) with the time it was issued.

The signature and its age stop a forged or stale cookie before the database is
asked; the token row lets logout and `tme user disable` end a session at once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlmodel import Session
from starlette.responses import Response

from tme.controller.services.roles import Principal
from tme.controller.services.tokens import issue_token, resolve_token
from tme.controller.store.security_models import User
from tme.errors import AuthError

SESSION_COOKIE = "tme_session"
_SALT = "tme.session"


def signing_key(settings: Any) -> str:
    """auth.secret_key, or a random key for this process when none is set (local mode:
    sessions then end when the controller restarts; production refuses an empty key)."""
    key = str(settings.auth.secret_key.get_secret_value())
    return key or secrets.token_urlsafe(32)


@dataclass(frozen=True)
class NewSession:
    token: str  # usable as a bearer token too
    cookie: str
    expires_at: datetime
    max_age_s: int


def start_session(session: Session, user: User, key: str, ttl_hours: int) -> NewSession:
    issued = issue_token(
        session, user, "dashboard session", ttl=timedelta(hours=ttl_hours), kind="session"
    )
    cookie = URLSafeTimedSerializer(key, salt=_SALT).dumps(issued.value)
    return NewSession(issued.value, cookie, issued.row.expires_at, ttl_hours * 3600)


def token_of_cookie(cookie: str, key: str, max_age_s: int) -> str:
    """The session token a cookie carries, or AuthError when forged or too old."""
    try:
        value = URLSafeTimedSerializer(key, salt=_SALT).loads(cookie, max_age=max_age_s)
    except BadSignature:  # SignatureExpired is a BadSignature too
        raise AuthError("invalid or expired session") from None
    if not isinstance(value, str):
        raise AuthError("invalid session")
    return value


def principal_of_cookie(session: Session, cookie: str, key: str, max_age_s: int) -> Principal:
    """For the dashboard: who a session cookie belongs to (AuthError when none)."""
    return resolve_token(session, token_of_cookie(cookie, key, max_age_s))


def set_session_cookie(response: Response, new: NewSession, *, secure: bool) -> None:
    # HttpOnly: page scripts cannot read it; SameSite=Strict: other sites' pages
    # cannot make the browser send it.
    response.set_cookie(
        SESSION_COOKIE,
        new.cookie,
        max_age=new.max_age_s,
        httponly=True,
        secure=secure,
        samesite="strict",
        path="/",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
