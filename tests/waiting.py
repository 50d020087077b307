"""Waiting on state with a deadline, for tests (never a bare sleep)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator

import pytest


def _looks(
    predicate: Callable[[], object], timeout: float, what: str
) -> Generator[None, None, object]:
    """Look at `predicate` until it returns something truthy (the generator's value),
    pausing (a yield) between looks; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        yield


def wait_until(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """Poll `predicate` until it returns something truthy, or fail at the deadline."""
    looks = _looks(predicate, timeout, what)
    while True:
        try:
            next(looks)
        except StopIteration as found:
            return found.value
        time.sleep(interval)  # polling interval of a deadline wait, not a synchronisation sleep


async def wait_until_async(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> object:
    """`wait_until` for a test on an event loop: the loop runs between looks."""
    looks = _looks(predicate, timeout, what)
    while True:
        try:
            next(looks)
        except StopIteration as found:
            return found.value
        await asyncio.sleep(interval)  # polling interval of a deadline wait
