"""A recording handler for bus tests: waits on deliveries with a deadline, never sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tme.bus import Delivery


class Recorder:
    """A handler that records deliveries and lets a test wait for them with a deadline."""

    def __init__(self, fail: Callable[[Delivery], None] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._fail = fail
        self._changed = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        if self._fail is not None:
            self._fail(delivery)

    def ids(self) -> list[str | None]:
        with self._changed:
            return [d.message_id for d in self.deliveries]

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.deliveries), timeout):
                pytest.fail(f"timed out; got {[d.message_id for d in self.deliveries]}")

    def wait_for_ids(self, ids: set[str], timeout: float = 10.0) -> None:
        self.wait_for(lambda ds: ids <= {d.message_id for d in ds}, timeout)
