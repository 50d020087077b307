"""Waiting on state with a deadline, for tests (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest


class _Looks:
    """Iterating looks at `predicate` until it returns something truthy (then kept in
    `found`), pausing between looks where the loop body pauses; fails at the deadline."""

    def __init__(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        self.predicate, self.timeout, self.what = predicate, timeout, what
        self.found: object = None

    def __iter__(self) -> Iterator[None]:
        deadline = time.monotonic() + self.timeout
        while not (value := self.predicate()):
            if time.monotonic() > deadline:
                pytest.fail(
                    f"timed out after {self.timeout}s waiting for {self.what or self.predicate}"
                )
            yield
        self.found = value


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy, or fail at the deadline."""
    looks = _Looks(predicate, timeout, what)
    for _ in looks:
        time.sleep(interval)  # polling interval of a deadline wait, not a synchronisation sleep
    return looks.found


async def wait_until_async(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """`wait_until` for a test on an event loop: the loop runs between looks."""
    looks = _Looks(predicate, timeout, what)
    for _ in looks:
        await asyncio.sleep(interval)  # polling interval of a deadline wait
    return looks.found
