"""Bearer tokens resolved a moment ago, answered without the database.

Every API request resolves its bearer token, a database read on the thread pool
that took about a fifth of a REST create's time. A principal resolved within the
last TTL_S is taken from here instead, on the event loop. Any change to a token or
a user committed in this process (a revoke, a logout, a disabled user, a new role
or sites, `last_used_at`) empties every cache at its commit; a change committed by
another process on the same database (`tme token revoke` on the command line) takes
effect within TTL_S. Only successes are kept: a refused token is looked up, and
audited, every time, and forgotten. Keys are digests, so the cache holds no secret.

While the database is unreachable no token can be checked, and a monitoring read
(`health.read`: /metrics) may take the principal last resolved for its token
instead, if that was within LAST_KNOWN_S: the figures an operator needs during an
outage are those it would otherwise lose. A revoke or a disabled user cannot be
committed meanwhile, and one committed before was refused at the next look-up.
"""

from __future__ import annotations

import hashlib
import threading
import time
import weakref
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from tme.controller.services.roles import Principal
from tme.controller.store.security_models import ApiToken, User

TTL_S = 1.0
# How long a principal may stand in for a token the database cannot check (a scraper
# resolves its token every scrape, so its entry is as old as the outage).
LAST_KNOWN_S = 24 * 3600.0
MAX_ENTRIES = 4096  # past this the cache starts over (tokens in use are far fewer)
CHANGED = "tme.credentials_changed"  # session.info key: a token or user was written


class PrincipalCache:
    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()
        self._cleared_at = 0.0
        _CACHES.add(self)

    def get(self, token: str) -> Principal | None:
        entry = self._entries.get(_key(token))
        if entry is None or time.monotonic() - entry[0] >= self.ttl_s:
            return None
        return entry[1]

    def last_known(self, token: str) -> Principal | None:
        """The principal last resolved for `token`, within LAST_KNOWN_S; for a
        monitoring read while the database is unreachable only."""
        entry = self._entries.get(_key(token))
        if entry is None or time.monotonic() - entry[0] >= LAST_KNOWN_S:
            return None
        return entry[1]

    def forget(self, token: str) -> None:
        """Drop a token that was refused."""
        with self._lock:
            self._entries.pop(_key(token), None)

    def put(self, token: str, principal: Principal, resolved_at: float) -> None:
        """Keep a principal read from the database from `resolved_at` (time.monotonic(),
        taken before the read) on; not when credentials changed since then."""
        with self._lock:
            if resolved_at <= self._cleared_at:
                return
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[_key(token)] = (resolved_at, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._cleared_at = time.monotonic()


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


_CACHES: weakref.WeakSet[PrincipalCache] = weakref.WeakSet()


@event.listens_for(Session, "after_flush")
def _note_credentials(session: Session, _context: Any) -> None:
    """Note a deleted token or user, or a changed one; a token's `last_used_at` alone
    (written as requests resolve it) changes nothing a principal holds."""
    changed = [o for o in session.dirty if isinstance(o, ApiToken | User)]
    deleted = any(isinstance(o, ApiToken | User) for o in session.deleted)
    if deleted or any(_changes_principal(o) for o in changed):
        session.info[CHANGED] = True


def _changes_principal(obj: ApiToken | User) -> bool:
    return any(
        attr.history.has_changes() for attr in inspect(obj).attrs if attr.key != "last_used_at"
    )


@event.listens_for(Session, "after_commit")
def _forget_on_commit(session: Session) -> None:
    if session.info.pop(CHANGED, False):
        for cache in list(_CACHES):
            cache.clear()


@event.listens_for(Session, "after_rollback")
def _drop_note(session: Session) -> None:
    session.info.pop(CHANGED, None)
