"""How a background loop logs its failing passes: once, then quietly until it recovers.

A loop that retries every half second through a database outage logged a traceback
on every pass: thousands of identical ones, burying the lines that tell an operator
what is going on. With a FailureLog the first failure is logged with its traceback;
while the same failure goes on, one short line per `every_s` says for how long and
how many passes; another kind of error is logged with its traceback again; and the
first pass that succeeds afterwards logs one line saying the loop recovered.

One FailureLog per loop, used from that loop's thread (it takes no lock).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# One line a minute while a failure lasts: often enough to show it still goes on,
# rarely enough that an hour of outage is a page of log, not thousands of tracebacks.
EVERY_S = 60.0
# Kinds of error logged with a traceback in one run of failures. An error whose text
# changes on every pass (an id in it) would otherwise flood the log again; past this
# many, new kinds only show in the periodic line.
MAX_KINDS = 10


class FailureLog:
    def __init__(
        self,
        log: logging.Logger,
        what: str,
        *,
        every_s: float = EVERY_S,
        meanwhile: str = "",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        """`what` names a pass in the lines logged: "<what> failed", "<what> recovered";
        `meanwhile`, if given, ends the first line ("<what> failed; <meanwhile>");
        `on_change`, if given, is called when `failing` turns true and when it turns
        false again (a gateway's heartbeat tells the controller at once)."""
        self.log, self.what, self.every_s, self.clock = log, what, every_s, clock
        self.on_change = on_change
        self.meanwhile = f"; {meanwhile}" if meanwhile else ""
        self.failed_passes = 0  # in the current run of failures; 0 while all is well
        self._since = 0.0  # when the current run of failures began
        self._noted_at = 0.0  # when the last line about it was logged
        self._kinds: set[str] = set()

    @property
    def failing(self) -> bool:
        return self.failed_passes > 0

    def failed(self, error: BaseException) -> None:
        """A pass failed with `error`: log it with its traceback if it is the first
        failure or a new kind of error, else at most one short line per `every_s`."""
        now, kind = self.clock(), describe(error)
        if not self.failing:
            self._since = now
        self.failed_passes += 1
        if self.failed_passes == 1 and self.on_change is not None:
            self.on_change()
        if kind not in self._kinds and len(self._kinds) < MAX_KINDS:
            if self._kinds:
                how = f" with another error ({self._lasted(now)} into the failures)"
            else:
                how = self.meanwhile
            self._kinds.add(kind)
            self._noted_at = now
            self.log.error("%s failed%s", self.what, how, exc_info=error)
        elif now - self._noted_at >= self.every_s:
            self._noted_at = now
            self.log.warning(
                "%s still failing for %s (%s): %s",
                self.what,
                self._lasted(now),
                _passes(self.failed_passes),
                kind,
            )

    def passed(self) -> None:
        """A pass succeeded: after failures, log one line saying so, and start afresh."""
        if not self.failing:
            return
        self.log.info(
            "%s recovered after %s over %s",
            self.what,
            _passes(self.failed_passes, "failed "),
            self._lasted(self.clock()),
        )
        self.failed_passes = 0
        self._kinds.clear()
        if self.on_change is not None:
            self.on_change()

    def _lasted(self, now: float) -> str:
        return span(now - self._since)


def describe(error: BaseException) -> str:
    """The error's type and the first line of its text; for a database error, the
    driver's own, so the same failure met in different statements reads the same."""
    orig = getattr(error, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's
    if isinstance(orig, BaseException):
        error = orig
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def span(seconds: float) -> str:
    """A duration as a person reads it in a log line: "45 s", "12 min", "3.5 h"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _passes(count: int, kind: str = "") -> str:
    return f"{count} {kind}pass" if count == 1 else f"{count} {kind}passes"
