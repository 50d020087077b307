"""A recording handler for bus tests: waits on deliveries with a deadline, never sleeps."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tme.bus import Delivery


class Recorder:
    """A handler that runs `inner` (if any), then records the delivery for waiting tests."""

    def __init__(self, inner: Callable[[Delivery], None] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._inner = inner
        self._changed = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        # Recorded after the inner handler ran, so a waiting test sees its effects too.
        try:
            if self._inner is not None:
                self._inner(delivery)
        finally:
            with self._changed:
                self.deliveries.append(delivery)
                self._changed.notify_all()

    def ids(self) -> list[str | None]:
        with self._changed:
            return [d.message_id for d in self.deliveries]

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.deliveries), timeout):
                pytest.fail(f"timed out; got {[d.message_id for d in self.deliveries]}")

    def wait_for_ids(self, ids: set[str], timeout: float = 10.0) -> None:
        self.wait_for(lambda ds: ids <= {d.message_id for d in ds}, timeout)
