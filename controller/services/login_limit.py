"""Login attempts per minute, counted per username and per client address.

Either count over the limit refuses the attempt (429) before the password is
checked, so guessing costs an attacker time whichever of the two they vary.
Kept in memory: a controller restart resets it, which is acceptable for a limit
measured in minutes.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class LoginLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._attempts: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, username: str, client: str) -> float | None:
        """Count an attempt; None when allowed, else seconds until the next is."""
        now = self._clock()
        keys = (f"user:{username.lower()}", f"client:{client}")
        with self._lock:
            waits = [self._wait(key, now) for key in keys]
            if any(w is not None for w in waits):
                return max(w for w in waits if w is not None)
            for key in keys:
                self._attempts.setdefault(key, deque()).append(now)
            return None

    def _wait(self, key: str, now: float) -> float | None:
        attempts = self._attempts.get(key)
        if attempts is None:
            return None
        while attempts and attempts[0] <= now - WINDOW_S:
            attempts.popleft()
        if not attempts:
            del self._attempts[key]
            return None
        if len(attempts) < self.per_minute:
            return None
        return attempts[0] + WINDOW_S - now
