"""Counts per minute of what unauthenticated clients may make the controller do.

Login attempts are counted per client address, per username from each address, and
per username from all addresses together with SPREAD times the limit: any count over
its limit refuses the attempt (429) before the password is checked, so guessing costs
an attacker time whichever they vary. One address guessing a user's password cannot
lock that user out of the other addresses: that takes SPREAD addresses' worth of
attempts in a minute.

Refusals are audited, but at most AUDITED_PER_MINUTE per client address: past that,
they are counted, and the count goes in the client's next audited refusal, so a
client sending bad tokens in a loop cannot grow the audit log (which is kept
whole for its hash chain) without bound.

Kept in memory: a controller restart resets it, which is acceptable for limits
measured in minutes. Keys idle for a window are swept, so random user names cost
no memory past a minute.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

WINDOW_S = 60.0
AUDITED_PER_MINUTE = 30
UNRECORDED_CLIENTS = 10_000  # counts kept of clients over their budget, at most
# A username's attempts from all addresses together may be this many times the limit.
SPREAD = 10


class SlidingWindow:
    """At most `limit` events per key in any WINDOW_S."""

    def __init__(
        self,
        limit: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        limit_of: Callable[[str], int | None] = lambda key: None,
    ) -> None:
        """`limit_of(key)`: a key's own limit, where it is not `limit` (None)."""
        self.limit = limit
        self._limit_of = limit_of
        self._clock = clock
        self._events: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._swept_at = clock()

    def take(self, keys: Iterable[str]) -> float | None:
        """Count an event under every key, or none when one of them is at its limit:
        None when counted, else the seconds until it would be."""
        now = self._clock()
        keys = list(keys)
        with self._lock:
            if now - self._swept_at >= WINDOW_S:
                self._sweep(now)
            waits = [w for w in (self._wait(key, now) for key in keys) if w is not None]
            if waits:
                return max(waits)
            for key in keys:
                self._events.setdefault(key, deque()).append(now)
            return None

    def __len__(self) -> int:
        return len(self._events)

    def _wait(self, key: str, now: float) -> float | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - WINDOW_S:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        limit = self._limit_of(key)
        if len(events) < (self.limit if limit is None else limit):
            return None
        return events[0] + WINDOW_S - now

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key in [k for k, events in self._events.items() if events[-1] <= now - WINDOW_S]:
            del self._events[key]


class LoginLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        spread = per_minute * SPREAD
        self._window = SlidingWindow(
            per_minute, clock, limit_of=lambda key: spread if key.startswith("all:") else None
        )

    def allow(self, username: str, client: str) -> float | None:
        """Count an attempt; None when allowed, else seconds until the next is."""
        user = username.lower()
        return self._window.take((f"client:{client}", f"user:{user}@{client}", f"all:{user}"))


class RefusalAudit:
    """Which refusals of a client to audit: the first AUDITED_PER_MINUTE of a window."""

    def __init__(
        self, per_minute: int = AUDITED_PER_MINUTE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._window = SlidingWindow(per_minute, clock)
        self._unrecorded: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> int | None:
        """None: do not audit this refusal (it is counted). Else audit it, with the
        number of this client's refusals left unaudited since its last audited one."""
        with self._lock:
            if self._window.take((client,)) is not None:
                if len(self._unrecorded) >= UNRECORDED_CLIENTS:
                    self._unrecorded.clear()  # a flood of addresses: counts are lost
                self._unrecorded[client] = self._unrecorded.get(client, 0) + 1
                return None
            return self._unrecorded.pop(client, 0)
