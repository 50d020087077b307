"""The gateway's bus publisher on both transports: neighbouring events travel packed in
one EventBatch, each keeps its id and its after-confirm step; a presence between them
goes on its own, in its place."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bus_recorder import Recorder

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import event_routing_key
from tme.protocol import EVENTS_EXCHANGE, Event, Presence, batch_routing_key, decode_events


def _event(site: str, n: int) -> Event:
    return Event(command_id=f"cmd-{n}", type="accepted", site=site, agent=f"agent-{n % 3}")


def _outgoing(site: str, message: Event | Presence, after: Callable[[], None]) -> Outgoing:
    packable = isinstance(message, Event)
    kind = message.type if isinstance(message, Event) else "presence"
    return Outgoing(
        EVENTS_EXCHANGE,
        event_routing_key(site, message.agent, kind),
        message.to_json(),
        message.id,
        after=after,
        pack_site=site if packable else None,
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
