"""consume_batch, on every transport: batches are handed over, settled per outcome.

Publishing before consuming makes the messages wait in the queue, so the consumer
takes them in batches; the tests check batching happened and every message is
settled as its outcome says (ack, dead-letter) or requeued when the handler raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from bus_recorder import Recorder

from tme.bus import Bus, Delivery, Reject
from tme.protocol import (
    DEAD_LETTER_EXCHANGE,
    DISPATCH_EXCHANGE,
    EVENTS_EXCHANGE,
    site_queue,
    site_routing_key,
)

BusFactory = Callable[..., Bus]


class BatchRecorder:
    """A batch handler recording each batch; `outcome` decides per delivery."""

    def __init__(self, outcome: Callable[[Delivery], Exception | None] = lambda d: None) -> None:
        self.batches: list[list[Delivery]] = []
        self.outcome = outcome
        self.fail_first = False
        self._changed = threading.Condition()

    def __call__(self, deliveries: list[Delivery]) -> list[Exception | None]:
        with self._changed:
            self.batches.append(deliveries)
            self._changed.notify_all()
            if self.fail_first and len(self.batches) == 1:
                raise RuntimeError("database down")
        return [self.outcome(d) for d in deliveries]

    def ids(self) -> list[str | None]:
        with self._changed:
            return [d.message_id for batch in self.batches for d in batch]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                pytest.fail(f"timed out; got {[len(b) for b in self.batches]} per batch")

    def wait_for_ids(self, ids: set[str], timeout: float = 10.0) -> None:
        self.wait_for(lambda: ids <= {d.message_id for b in self.batches for d in b}, timeout)


def _publish(bus: Bus, site: str, count: int, prefix: str = "m") -> set[str]:
    messages = [(site_routing_key(site), b"%d" % i, f"{prefix}-{i}") for i in range(count)]
    assert bus.publish_many(DISPATCH_EXCHANGE, messages) == [None] * count
    return {m[2] for m in messages if m[2] is not None}


def test_waiting_messages_arrive_in_batches_and_are_acked(make_bus: BusFactory, site: str) -> None:
    bus = make_bus()
    bus.declare_site(site)
    ids = _publish(bus, site, 200)
    handler = BatchRecorder()

    consumer = bus.consume_batch(site_queue(site), handler, prefetch=200, max_batch=50)
    handler.wait_for_ids(ids)
    consumer.stop()

    assert sorted(handler.ids()) == sorted(ids)  # each once: acked, never redelivered
    assert max(len(b) for b in handler.batches) > 1
    assert all(len(b) <= 50 for b in handler.batches)
    again = BatchRecorder()
    bus.consume_batch(site_queue(site), again)
    _publish(bus, site, 1, prefix="probe")
    again.wait_for_ids({"probe-0"})
    assert again.ids() == ["probe-0"]  # nothing of the first 200 came back


def _dead_letters(bus: Bus, site: str) -> Recorder:
    """Declare the site and record what its queue dead-letters."""
    bus.declare_site(site)
    tap = f"tme.test.dead.{site}"
    bus.declare_queue(tap, DEAD_LETTER_EXCHANGE, site_routing_key(site))
    dead = Recorder()
    bus.consume(tap, dead)
    return dead


def test_a_rejected_delivery_is_dead_lettered_the_rest_acked(
    make_bus: BusFactory, site: str
) -> None:
    bus = make_bus()
    dead = _dead_letters(bus, site)
    ids = _publish(bus, site, 20)
    handler = BatchRecorder(lambda d: Reject("poison") if d.message_id == "m-7" else None)

    bus.consume_batch(site_queue(site), handler, max_batch=20)
    handler.wait_for_ids(ids)
    dead.wait_for_ids({"m-7"})

    assert dead.ids() == ["m-7"]
    assert sorted(handler.ids()) == sorted(ids)


def test_an_error_outcome_requeues_that_delivery_alone_until_the_limit(
    make_bus: BusFactory, site: str
) -> None:
    """A delivery whose outcome is an exception (not Reject) is requeued, like a handler
    raising it, and dead-lettered past the delivery limit; the rest are acked once. On an
    events queue, whose limit is the configured one (a site queue's is far higher)."""
    bus = make_bus(delivery_limit=2)
    queue, key = f"tme.test.events.{site}", f"{site}.#"
    bus.declare_queue(queue, EVENTS_EXCHANGE, key)
    dead = Recorder()
    tap = f"tme.test.dead.{site}"
    bus.declare_queue(tap, DEAD_LETTER_EXCHANGE, key)
    bus.consume(tap, dead)
    messages = [(f"{site}.a1.succeeded", b"%d" % i, f"m-{i}") for i in range(20)]
    assert bus.publish_many(EVENTS_EXCHANGE, messages) == [None] * 20
    ids = {m[2] for m in messages}
    handler = BatchRecorder(
        lambda d: RuntimeError("cannot apply") if d.message_id == "m-7" else None
    )

    bus.consume_batch(queue, handler, max_batch=20)
    dead.wait_for_ids({"m-7"})

    seen = handler.ids()
    assert seen.count("m-7") > 1  # requeued, not dead-lettered at once
    assert sorted(m for m in seen if m != "m-7") == sorted(ids - {"m-7"})
    assert dead.ids() == ["m-7"]


def test_a_failing_batch_is_requeued_whole(make_bus: BusFactory, site: str) -> None:
    bus = make_bus()
    bus.declare_site(site)
    ids = _publish(bus, site, 10)
    handler = BatchRecorder()
    handler.fail_first = True

    bus.consume_batch(site_queue(site), handler, max_batch=100)

    def failed_batch_came_again() -> bool:
        if not handler.batches:
            return False
        first = {d.message_id for d in handler.batches[0]}
        later = {d.message_id for b in handler.batches[1:] for d in b}
        return first <= later and ids <= first | later

    # Wait for every message of the failed batch to come again, and for the others
    # (not merely as many messages: one the failed batch did not take may come first).
    handler.wait_for(failed_batch_came_again)

    first = {d.message_id for d in handler.batches[0]}
    later = [d for b in handler.batches[1:] for d in b]
    assert all(d.redelivered for d in later if d.message_id in first)
    assert set(handler.ids()) == ids
