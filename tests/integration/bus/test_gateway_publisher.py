"""The gateway's bus publisher on both transports: neighbouring events travel packed in
one EventBatch, each keeps its id and its after-confirm step; a presence between them
goes on its own, in its place. Events that are not final wait for company up to
LINGER_S; a final event or a presence ends the wait at once."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bus_recorder import Recorder
from waiting import wait_until

from tme.agents import bus_publisher
from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import event_routing_key
from tme.bus.base import Bus, Consumer
from tme.protocol import (
    EVENTS_EXCHANGE,
    FINAL_EVENT_TYPES,
    Event,
    Presence,
    batch_routing_key,
    decode_events,
)


def _event(site: str, n: int) -> Event:
    return Event(command_id=f"cmd-{n}", type="accepted", site=site, agent=f"agent-{n % 3}")


def _outgoing(
    site: str, message: Event | Presence, after: Callable[[], None] | None = None
) -> Outgoing:
    packable = isinstance(message, Event)
    kind = message.type if isinstance(message, Event) else "presence"
    return Outgoing(
        EVENTS_EXCHANGE,
        event_routing_key(site, message.agent, kind),
        message.to_json(),
        message.id,
        after=after,
        pack_site=site if packable else None,
        may_wait=isinstance(message, Event) and message.type not in FINAL_EVENT_TYPES,
    )


def test_neighbouring_events_travel_in_one_batch_and_each_is_confirmed(make_bus, site):
    bus = make_bus()
    queue = f"tme.test.gw.{site}"
    bus.declare_queue(queue, EVENTS_EXCHANGE, f"{site}.#")
    recorder = Recorder()
    consumer = bus.consume(queue, recorder)
    presence = Presence(site=site, agent="agent-1", state="online")
    sent = [_event(site, n) for n in range(5)] + [presence] + [_event(site, n) for n in (5, 6)]
    confirmed: list[str] = []
    lock = threading.Lock()

    def after(message_id: str) -> Callable[[], None]:
        def step() -> None:
            with lock:
                confirmed.append(message_id)

        return step

    publisher = BusPublisher(bus)
    for message in sent:  # queued before the thread starts: one round trip takes them all
        publisher.submit(_outgoing(site, message, after(message.id)))
    publisher.start()
    try:
        recorder.wait_for(lambda ds: len(ds) >= 3)
    finally:
        publisher.stop()
        consumer.stop()
    keys = [d.routing_key for d in recorder.deliveries]
    assert keys == [
        batch_routing_key(site),
        event_routing_key(site, "agent-1", "presence"),
        batch_routing_key(site),
    ]
    received = [m for d in recorder.deliveries for m in decode_events(d.body)]
    assert [m.id for m in received] == [m.id for m in sent]
    assert sorted(confirmed) == sorted(m.id for m in sent)


def _tap(bus: Bus, site: str) -> tuple[Recorder, Consumer]:
    queue = f"tme.test.gw.{site}"
    bus.declare_queue(queue, EVENTS_EXCHANGE, f"{site}.#")
    recorder = Recorder()
    return recorder, bus.consume(queue, recorder)


def test_a_final_event_ends_the_wait_and_takes_the_waiting_ones_along(make_bus, site, monkeypatch):
    monkeypatch.setattr(bus_publisher, "LINGER_S", 60.0)  # only a final event ends it here
    bus = make_bus()
    recorder, consumer = _tap(bus, site)
    publisher = BusPublisher(bus)
    publisher.start()
    started = Event(command_id="c", type="started", site=site, agent="a")
    succeeded = Event(command_id="c", type="succeeded", site=site, agent="a")
    try:
        publisher.submit(_outgoing(site, started))
        wait_until(lambda: publisher.backlog == 0, what="started taken, and waiting")
        publisher.submit(_outgoing(site, succeeded))
        recorder.wait_for(lambda ds: len(ds) >= 1)
    finally:
        publisher.stop()
        consumer.stop()
    (delivery,) = recorder.deliveries
    assert [e.id for e in decode_events(delivery.body)] == [started.id, succeeded.id]


def test_a_presence_ends_the_wait_and_a_lone_event_goes_after_linger_s(make_bus, site, monkeypatch):
    monkeypatch.setattr(bus_publisher, "LINGER_S", 60.0)
    bus = make_bus()
    recorder, consumer = _tap(bus, site)
    publisher = BusPublisher(bus)
    publisher.start()
    accepted = Event(command_id="c", type="accepted", site=site, agent="a")
    presence = Presence(site=site, agent="a", state="online")
    try:
        publisher.submit(_outgoing(site, accepted))
        publisher.submit(_outgoing(site, presence))
        recorder.wait_for(lambda ds: len(ds) >= 2)  # long before LINGER_S
        monkeypatch.setattr(bus_publisher, "LINGER_S", 0.05)
        alone = Event(command_id="d", type="accepted", site=site, agent="a")
        publisher.submit(_outgoing(site, alone))
        recorder.wait_for(lambda ds: len(ds) >= 3)
    finally:
        publisher.stop()
        consumer.stop()
    ids = [m.id for d in recorder.deliveries for m in decode_events(d.body)]
    assert ids == [accepted.id, presence.id, alone.id]


def test_a_message_no_queue_takes_does_not_count_as_a_lost_link(make_bus, site):
    """The gateway tells its agents in its presence whether it reaches the broker; an
    agent may stop a pump on that. The broker returning an unroutable message answered
    it: the link works."""
    bus = make_bus()
    told: list[bool] = []
    publisher = BusPublisher(bus, on_link=told.append)
    nowhere = Presence(site=site, agent="agent-1", state="online")
    publisher.start()
    try:
        publisher.submit(
            Outgoing(EVENTS_EXCHANGE, f"{site}.nobody.listens", nowhere.to_json(), nowhere.id)
        )
        # retried for ever (unroutable); the link is up meanwhile
        wait_until(lambda: told, what="the first publish's outcome")
        assert told == [True] and publisher.link_up is True
    finally:
        publisher.stop(wait_s=5)
