"""One thread that publishes the gateway's messages to the bus, in order, until confirmed.

Whatever is queued when the thread comes round is published as one pipelined batch
(one confirm round trip for the lot, not one per message); each message's `after`
step runs once its own confirm arrived. Events queued next to each other travel
packed in one EventBatch message (up to PACK_MAX): under load the broker, the
gateway and the controller handle a tenth of the messages; an event queued alone
goes as it came. Events that are not final wait up to LINGER_S for company.

A bus publish waits for the broker's confirm, which must never happen on paho's
thread; and a failed publish is retried rather than dropped, because what waits
behind it (an MQTT ack, a journal update) must only happen after the confirm.
One thread keeps the order in which the agent's events arrived.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tme.bus.base import Bus, broker_answered
from tme.errors import BusError
from tme.protocol import batch_routing_key, pack_events

log = logging.getLogger(__name__)

RETRY_MIN_S, RETRY_MAX_S = 0.2, 10.0  # back off while the bus is down, without busy-looping
MAX_BATCH = 500  # messages per confirm round trip
PACK_MAX = 100  # events per EventBatch message
PACK_MAX_BYTES = 256 * 1024  # and bytes: events with long results or log lines go fewer
# How long a batch of events that are not final waits for more. At low rates a command's
# delivered, accepted and started come within a few ms: one message instead of three,
# which halves what the broker and the controller spend per task; a final event (the
# one a task's latency ends on) never waits, and takes what waits with it.
LINGER_S = 0.005


@dataclass(frozen=True)
class Outgoing:
    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None
    after: Callable[[], None] | None = None  # runs once the broker confirmed
    # Set for an event (body: its JSON) of this site: it may travel in an EventBatch.
    pack_site: str | None = None
    # An event that is not final may wait up to LINGER_S for others to travel with.
    may_wait: bool = False


class BusPublisher:
    def __init__(self, bus: Bus, on_link: Callable[[bool], None] | None = None) -> None:
        """`on_link(up)`, if given, is called on this thread when publishing starts
        failing (False) and when a publish is confirmed after that, or first (True)."""
        self._bus = bus
        self._on_link = on_link
        self.link_up: bool | None = None  # None until the first publish is confirmed or fails
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tme-gw-bus-publisher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait_s: float | None = None) -> None:
        """Stop after the message in hand; queued ones are not confirmed, hence not acked.
        With `wait_s`, wait at most that long for the thread (`join` waits for the rest):
        a message in hand waits for its confirm up to the bus's confirm_timeout_s, which
        only stopping the bus cuts short."""
        self._stopping.set()
        self._queue.put(None)
        self.join(wait_s)

    def join(self, wait_s: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(wait_s)

    def submit(self, item: Outgoing) -> None:
        self._queue.put(item)

    @property
    def backlog(self) -> int:
        """Items submitted and not yet taken into a batch (diagnostics, tests)."""
        return self._queue.qsize()

    def _run(self) -> None:
        while not self._stopping.is_set():
            batch = self._take_batch()
            if batch is None:
                return
            for item in self._publish_until_confirmed(batch):
                if item.after is None:
                    continue
                try:
                    item.after()
                except Exception:
                    log.exception("after-confirm step of %s failed", item.message_id)

    def _take_batch(self) -> list[Outgoing] | None:
        """What is queued now, up to MAX_BATCH: one confirm round trip for all of it.

        A batch of events that may wait (none final) waits up to LINGER_S for more, so
        a command's delivered, accepted and started travel together at low rates too;
        an item that may not wait (a final event, a presence) ends the wait at once.
        """
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        urgent = not first.may_wait
        deadline = time.monotonic() + LINGER_S
        while len(batch) < MAX_BATCH:
            try:
                if urgent:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._stopping.set()
                break
            batch.append(item)
            urgent = urgent or not item.may_wait
        return batch

    def _publish_until_confirmed(self, batch: list[Outgoing]) -> list[Outgoing]:
        """Publish pipelined, retry what failed; return the confirmed items in their order."""
        delay = RETRY_MIN_S
        failures = 0
        pending = batch
        confirmed: set[int] = set()
        while pending:
            errors = self._publish_many(pending)
            self._note_link(any(broker_answered(error) for error in errors))
            done = [item for item, error in zip(pending, errors, strict=True) if error is None]
            confirmed.update(id(item) for item in done)
            failed = [item for item, error in zip(pending, errors, strict=True) if error]
            pending = failed
            if not pending:
                break
            failures += 1
            if failures == 1:  # log once, then quietly until it recovers
                first = next(e for e in errors if e is not None)
                log.warning("bus publish of %d failed, retrying: %s", len(failed), first.message)
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, RETRY_MAX_S)
        if failures and not pending:
            log.info("bus publish recovered after %d failures", failures)
        return [item for item in batch if id(item) in confirmed]

    def _note_link(self, up: bool) -> None:
        if up == self.link_up:
            return
        self.link_up = up
        if self._on_link is not None:
            try:
                self._on_link(up)
            except Exception:  # telling it is not publishing: the messages still go
                log.exception("telling that the bus link is %s failed", "up" if up else "down")

    def _publish_many(self, items: list[Outgoing]) -> list[BusError | None]:
        errors: list[BusError | None] = [None] * len(items)
        for exchange in dict.fromkeys(item.exchange for item in items):
            where = [i for i, item in enumerate(items) if item.exchange == exchange]
            wire = pack([items[i] for i in where])
            try:
                results = self._bus.publish_many(exchange, [w.message for w in wire])
            except BusError as exc:
                results = [exc] * len(wire)
            for sent, result in zip(wire, results, strict=True):
                for j in sent.members:
                    errors[where[j]] = result
        return errors


@dataclass(frozen=True)
class WireMessage:
    message: tuple[str, bytes, str | None]  # routing key, body, message id
    members: list[int]  # the items it carries, by their index in what was packed


def pack(items: list[Outgoing]) -> list[WireMessage]:
    """One message per item, except that neighbouring events of a site share one."""
    wire: list[WireMessage] = []
    run: list[int] = []  # neighbouring packable items not yet written
    size = 0  # their bytes

    def close_run() -> None:
        if len(run) == 1:
            item = items[run[0]]
            wire.append(WireMessage((item.routing_key, item.body, item.message_id), [run[0]]))
        elif run:
            site = items[run[0]].pack_site
            assert site is not None
            batch_id, body = pack_events(site, [items[i].body for i in run])
            wire.append(WireMessage((batch_routing_key(site), body, batch_id), list(run)))
        run.clear()

    for i, item in enumerate(items):
        if run and (
            item.pack_site != items[run[0]].pack_site
            or len(run) >= PACK_MAX
            or size + len(item.body) > PACK_MAX_BYTES
        ):
            close_run()
            size = 0
        if item.pack_site is None:
            wire.append(WireMessage((item.routing_key, item.body, item.message_id), [i]))
        else:
            run.append(i)
            size += len(item.body)
    close_run()
    return wire
