"""Password hashing with argon2id (argon2-cffi's recommended parameters)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _hasher().verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verified against when the user does not exist, so a wrong username costs as much
# time as a wrong password and does not reveal which usernames exist.
@lru_cache(maxsize=1)
def dummy_hash() -> str:
    return hash_password("no such user: this hash only burns time")
