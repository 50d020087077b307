"""Users: create, list, disable, set and check a password (`authenticate`)."""

from __future__ import annotations

import re
from typing import NewType

from sqlmodel import Session, col, select

from tme.controller.services.passwords import (
    MIN_PASSWORD_LENGTH,
    dummy_hash,
    hash_password,
    verify_password,
)
from tme.controller.services.roles import Principal, Role, grant_problems, parse_sites
from tme.controller.store.models import utcnow
from tme.controller.store.security_models import ApiToken, User
from tme.errors import AuthError, Conflict, NotFound, ValidationError

USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")

# A new password's hash (new_password_hash), not the password: hashing takes about 0.15 s,
# so it is done before the change's transaction, where the audit chain is locked and
# every other change waits.
PasswordHash = NewType("PasswordHash", str)


def _invalid(field: str, message: str) -> ValidationError:
    return ValidationError(
        f"invalid {field}: {message}",
        field_errors=[{"field": field, "message": message, "type": "value_error"}],
    )


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise _invalid("role", f"must be one of {', '.join(Role)}") from None


def check_new_user(username: str, role: str, sites: list[str] | str) -> list[str]:
    """The sites granted to a new user, its name, role and sites checked as create_user
    checks them: `tme user create` asks for the password only once they hold (it asked
    twice, then refused the name)."""
    if not USERNAME.match(username):
        raise _invalid("username", "1-64 letters, digits or . _ @ -")
    parse_role(role)
    granted = parse_sites(sites)
    if not granted:
        raise _invalid("sites", 'grant at least one site, or "*" for all')
    if problems := grant_problems(granted):
        raise _invalid("sites", "; ".join(problems))
    return list(granted)


def new_password_hash(password: str) -> PasswordHash:
    """A new password checked and hashed, for `create_user` and `set_password`: hash it
    before the transaction that stores it (PasswordHash)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise _invalid("password", f"at least {MIN_PASSWORD_LENGTH} characters")
    return PasswordHash(hash_password(password))


def create_user(
    session: Session,
    username: str,
    password_hash: PasswordHash,
    role: str,
    sites: list[str] | str,
) -> User:
    granted = check_new_user(username, role, sites)
    if session.exec(select(User).where(User.username == username)).first() is not None:
        raise Conflict(f"user {username!r} already exists", details={"username": username})
    user = User(
        username=username,
        password_hash=password_hash,
        role=parse_role(role).value,
        sites=list(granted),
    )
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> list[User]:
    return list(session.exec(select(User).order_by(col(User.username))).all())


def get_user(session: Session, username: str) -> User:
    user = session.exec(select(User).where(User.username == username)).first()
    if user is None:
        raise NotFound(f"user {username!r} does not exist", details={"username": username})
    return user


def set_password(session: Session, username: str, password_hash: PasswordHash) -> User:
    """A new password for `username`; its tokens and open sessions stay valid."""
    user = get_user(session, username)
    user.password_hash = password_hash
    session.add(user)
    return user


def disable_user(session: Session, username: str) -> User:
    """Disable a user and revoke every token they hold; their sessions end too."""
    user = get_user(session, username)
    user.disabled = True
    session.add(user)
    now = utcnow()
    tokens = session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id, col(ApiToken.revoked_at).is_(None))
    )
    for token in tokens:
        token.revoked_at = now
        session.add(token)
    return user


def principal_of(user: User, token: ApiToken | None = None) -> Principal:
    source = token or user
    return Principal(
        user_id=user.id or 0,
        username=user.username,
        role=Role(source.role),
        sites=parse_sites(source.sites),
        token_id=token.id if token else None,
        token_kind=token.kind if token else "password",
    )


def authenticate(session: Session, username: str, password: str) -> Principal:
    """The principal of a username and password, or AuthError (same text for every cause).

    A name no user can have (see USERNAME) is not looked up: PostgreSQL refused one
    with a NUL as a value it cannot store, a 422 a wrong name never gets."""
    possible = USERNAME.match(username) is not None
    user = session.exec(select(User).where(User.username == username)).first() if possible else None
    valid = verify_password(user.password_hash if user else dummy_hash(), password)
    if user is None or not valid or user.disabled:
        raise AuthError("wrong username or password")
    user.last_login_at = utcnow()
    session.add(user)
    return principal_of(user)
