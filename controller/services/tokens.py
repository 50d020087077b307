"""API tokens: "tme_<key_id>_<secret>", stored as the SHA-256 of the secret.

The secret has 256 random bits, so a fast hash is enough (a password needs
argon2 because people choose weak ones; a token is never chosen). The key id
finds the row without scanning; the comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlmodel import Session, col, select

from tme.controller.services.roles import ALL_SITES, Principal, Role, grant_problems, parse_sites
from tme.controller.services.users import get_user, parse_role, principal_of
from tme.controller.store.models import utcnow
from tme.controller.store.security_models import ApiToken, User
from tme.errors import AuthError, Forbidden, NotFound, ValidationError

PREFIX = "tme"
# Skip writing last_used_at on every request; a minute of precision is plenty.
LAST_USED_PRECISION = timedelta(minutes=1)


# Every request resolves its token: one query for the token and its user, built once.
TOKEN_AND_USER = (
    select(ApiToken, User)
    .outerjoin(User, col(User.id) == col(ApiToken.user_id))
    .where(col(ApiToken.key_id) == bindparam("key_id"))
)


@dataclass(frozen=True)
class IssuedToken:
    """A new token: `value` is shown once and never stored."""

    value: str
    row: ApiToken


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def issue_token(
    session: Session,
    user: User,
    name: str,
    *,
    ttl: timedelta,
    role: str | None = None,
    sites: list[str] | str | None = None,
    kind: str = "api",
) -> IssuedToken:
    """Make a token for `user`, never with a higher role or wider sites than the user's."""
    if user.disabled:
        raise Forbidden(f"user {user.username!r} is disabled")
    token_role = parse_role(role) if role else Role(user.role)
    if token_role.rank > Role(user.role).rank:
        raise Forbidden(f"a token cannot have a higher role than its user ({user.role})")
    user_sites = parse_sites(user.sites)
    token_sites = parse_sites(sites) if sites else user_sites
    if problems := grant_problems(token_sites if sites else ()):
        message = "; ".join(problems)
        raise ValidationError(
            f"invalid sites: {message}",
            field_errors=[{"field": "sites", "message": message, "type": "value_error"}],
        )
    if ALL_SITES not in user_sites and not set(token_sites) <= set(user_sites):
        raise Forbidden(f"a token cannot reach sites its user cannot ({', '.join(user_sites)})")
    if not name.strip() or len(name) > 100:
        raise ValidationError(
            "invalid name: 1-100 characters",
            field_errors=[{"field": "name", "message": "1-100 characters", "type": "value_error"}],
        )
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    row = ApiToken(
        key_id=key_id,
        secret_hash=_digest(secret),
        user_id=user.id or 0,
        name=name,
        kind=kind,
        role=token_role.value,
        sites=list(token_sites),
        expires_at=utcnow() + ttl,
    )
    session.add(row)
    session.flush()
    return IssuedToken(f"{PREFIX}_{key_id}_{secret}", row)


def create_token(
    session: Session,
    username: str,
    name: str,
    *,
    days: int,
    role: str | None = None,
    sites: list[str] | str | None = None,
) -> IssuedToken:
    return issue_token(
        session, get_user(session, username), name, ttl=timedelta(days=days), role=role, sites=sites
    )


def list_tokens(session: Session, username: str | None = None) -> list[tuple[ApiToken, User]]:
    """The API tokens, of `username` only when given: NotFound when no user has that name
    (an empty list read as "they have no token", for a typo)."""
    query = select(ApiToken, User).where(ApiToken.user_id == User.id, ApiToken.kind == "api")
    if username is not None:  # `--user ""` names no user either
        query = query.where(ApiToken.user_id == get_user(session, username).id)
    return [(t, u) for t, u in session.exec(query.order_by(col(ApiToken.id))).all()]


def revoke_token(session: Session, token_id: int) -> ApiToken:
    token = session.get(ApiToken, token_id)
    if token is None:
        raise NotFound(f"token {token_id} does not exist", details={"token_id": token_id})
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
    return token


def _split(value: str) -> tuple[str, str] | None:
    parts = value.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


def resolve_token(session: Session, value: str, *, now: datetime | None = None) -> Principal:
    """The principal a token acts as, or AuthError saying why (for the audit log)."""
    parts = _split(value)
    if parts is None:
        raise AuthError("malformed token")
    found = session.exec(TOKEN_AND_USER, params={"key_id": parts[0]}).first()
    row, user = found if found is not None else (None, None)
    if row is None or not hmac.compare_digest(row.secret_hash, _digest(parts[1])):
        raise AuthError("unknown token")
    now = now or utcnow()
    if row.revoked_at is not None:
        raise AuthError("revoked token", details={"token_id": row.id})
    if row.expires_at <= now:
        raise AuthError("expired token", details={"token_id": row.id})
    if user is None or user.disabled:
        raise AuthError("token of a disabled user", details={"token_id": row.id})
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_PRECISION:
        row.last_used_at = now
        session.add(row)
    return principal_of(user, row)
