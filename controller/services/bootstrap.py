"""The first admin of a fresh database: what `tme demo` and the test fixtures start with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.engine import Engine

from tme.controller.services.tokens import issue_token
from tme.controller.services.users import create_user, new_password_hash
from tme.controller.store.db import session_scope


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    token: str


def make_user_with_token(
    engine: Engine,
    username: str,
    role: str,
    sites: str | list[str] = "*",
    *,
    password: str | None = None,
    token_days: int = 30,
) -> Credentials:
    """A user with a generated password (unless given) and one API token."""
    password = password or secrets.token_urlsafe(12)
    hashed = new_password_hash(password)
    with session_scope(engine) as session:
        user = create_user(session, username, hashed, role, sites)
        issued = issue_token(session, user, f"{username} bootstrap", ttl=timedelta(days=token_days))
    return Credentials(username, password, issued.value)


def create_admin(engine: Engine, username: str = "admin") -> Credentials:
    return make_user_with_token(engine, username, "admin", "*")
