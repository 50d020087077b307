"""The controller's side of the path, on the memory bus and on the real RabbitMQ:
the outbox is published only with confirms and again after a crash; the event
consumer applies events once, dead-letters what it cannot read and keeps going.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pg_database import PgDatabase
from sqlalchemy.exc import OperationalError
from sqlmodel import col, select
from waiting import wait_until

from tme.bus import Bus, Delivery, open_bus
from tme.config import Settings
from tme.controller import dispatcher as dispatcher_module
from tme.controller import event_consumer
from tme.controller.dispatcher import Dispatcher
from tme.controller.event_consumer import EventConsumer
from tme.controller.outbox import OutboxWriter
from tme.controller.services.tasks import create_task
from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.models import Outbox, Run, RunEvent
from tme.protocol import (
    DEAD_LETTER_EXCHANGE,
    DISPATCH_EXCHANGE,
    EVENTS_EXCHANGE,
    Command,
    Event,
    batch_routing_key,
    pack_events,
    site_queue,
    site_routing_key,
)
from tme.schemas import TaskCreate


@pytest.fixture
def site() -> str:
    return f"site-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def bus(bus_url: str, site: str) -> Iterator[Bus]:
    bus = open_bus(bus_url, confirm_timeout_s=10)
    bus.start()
    yield bus
    for queue in (site_queue(site), f"tme.test.events.{site}"):
        bus.delete_queue(queue)
    bus.stop()


def _queue_tasks(
    engine: Any, site: str, count: int, priorities: list[int] | None = None
) -> list[str]:
    hook = OutboxWriter(Settings(), threading.Event())
    run_ids = []
    with session_scope(engine) as session:
        for n in range(count):
            body = TaskCreate(
                name=f"read {n}",
                op="modbus.read",
                target={"site": site, "agent": "skid-a", "device": "pump1"},
                params={"point": "speed_setpoint"},
                priority=priorities[n] if priorities else 5,
            )
            task, _ = create_task(session, body, on_run_ready=hook)
            run_ids.append(task.latest_run_id)
    return run_ids


class Collector:
    def __init__(self) -> None:
        self.commands: list[Command] = []
        self.cond = threading.Condition()

    def __call__(self, delivery: Delivery) -> None:
        with self.cond:
            self.commands.append(Command.from_json(delivery.body))
            self.cond.notify_all()

    def wait_for(self, count: int) -> list[Command]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.commands) >= count, 15), self.commands
            return list(self.commands)


def _states(engine: Any, run_ids: list[str]) -> set[str]:
    with session_scope(engine) as session:
        return {session.get(Run, r).state for r in run_ids}  # type: ignore[union-attr]


@contextmanager
def _commands_of(bus: Bus, site: str) -> Iterator[Collector]:
    """The site's queue, declared, its commands collected while inside."""
    bus.declare_site(site)
    collector = Collector()
    consumer = bus.consume(site_queue(site), collector)
    try:
        yield collector
    finally:
        consumer.stop()


@contextmanager
def _dispatching(engine: Any, bus: Bus) -> Iterator[Dispatcher]:
    dispatcher = Dispatcher(engine, bus)
    dispatcher.start()
    try:
        yield dispatcher
    finally:
        dispatcher.stop()


def test_outbox_is_published_with_confirms_and_runs_become_dispatched(app_engine, bus, site):
    run_ids = _queue_tasks(app_engine, site, 3)
    assert _states(app_engine, run_ids) == {"queued"}
    with _commands_of(bus, site) as collector, _dispatching(app_engine, bus):
        commands = collector.wait_for(3)
        wait_until(lambda: _states(app_engine, run_ids) == {"dispatched"}, what="dispatched")
    assert sorted(c.id for c in commands) == sorted(run_ids)
    assert {(c.site, c.agent, c.device, c.op) for c in commands} == {
        (site, "skid-a", "pump1", "modbus.read")
    }
    with session_scope(app_engine) as session:
        rows = session.exec(select(Outbox).where(col(Outbox.run_id).in_(run_ids))).all()
        assert all(r.published_at is not None for r in rows)


def test_what_was_never_confirmed_is_published_again_after_a_restart(app_engine, bus, site):
    run_ids = _queue_tasks(app_engine, site, 2)
    bus.declare_site(site)
    # A controller that published but crashed before recording the confirms:
    with session_scope(app_engine) as session:
        rows = session.exec(select(Outbox).where(col(Outbox.run_id).in_(run_ids))).all()
        bus.publish_many(
            DISPATCH_EXCHANGE, [(site_routing_key(site), r.body.encode(), r.run_id) for r in rows]
        )
    with _commands_of(bus, site) as collector, _dispatching(app_engine, bus):  # restarted
        commands = collector.wait_for(4)
        wait_until(lambda: _states(app_engine, run_ids) == {"dispatched"}, what="dispatched")
    # Each command went out twice with the same id (the edge deduplicates by it) ...
    assert sorted(c.id for c in commands) == sorted(run_ids * 2)
    # ... and each run was dispatched once.
    with session_scope(app_engine) as session:
        hops = session.exec(
            select(RunEvent).where(
                col(RunEvent.run_id).in_(run_ids), RunEvent.to_state == "dispatched"
            )
        ).all()
        assert len(hops) == 2


def test_confirms_of_several_passes_are_recorded_together_and_never_published_twice(
    app_engine, bus, site
):
    dispatcher = Dispatcher(app_engine, bus)  # not started: its passes are made here
    with _commands_of(bus, site) as collector:
        first = _queue_tasks(app_engine, site, 2)
        assert dispatcher.publish_pending() == 2
        second = _queue_tasks(app_engine, site, 1)
        assert dispatcher.publish_pending() == 1  # the held two are not published again
        assert dispatcher.publish_pending() == 0
        commands = collector.wait_for(3)
        assert _states(app_engine, first + second) == {"queued"}  # confirmed, held
        dispatcher.record_confirmed()
    assert sorted(c.id for c in commands) == sorted(first + second)
    assert _states(app_engine, first + second) == {"dispatched"}
    with session_scope(app_engine) as session:
        rows = session.exec(select(Outbox).where(col(Outbox.run_id).in_(first + second))).all()
        assert all(r.published_at is not None and r.attempts == 1 for r in rows)
        hops = session.exec(
            select(RunEvent).where(
                col(RunEvent.run_id).in_(first), RunEvent.to_state == "dispatched"
            )
        ).all()
    # Each hop keeps the time of its own confirm, not that of the recording.
    published = {r.run_id: r.published_at for r in rows}
    assert {h.run_id: h.at for h in hops} == {r: published[r] for r in first}


def test_confirm_listeners_are_told_how_many_commands_the_broker_confirmed_and_how_fast(
    app_engine, bus, site
):
    """What tme_dispatch_confirm_seconds observes: each publish the broker confirmed,
    with its count and time; a publish it refused (no queue for the site) tells nothing."""
    dispatcher = Dispatcher(app_engine, bus)  # not started: its passes are made here
    told: list[tuple[int, float]] = []
    dispatcher.confirm_listeners.append(lambda count, seconds: told.append((count, seconds)))
    with _commands_of(bus, site) as collector:
        _queue_tasks(app_engine, site, 3)
        assert dispatcher.dispatch_pending() == 3
        collector.wait_for(3)
    assert [count for count, _ in told] == [3]
    assert 0 < told[0][1] < 10  # the bus's confirm timeout
    dispatcher.bus = _Refusing(bus)  # type: ignore[assignment]
    _queue_tasks(app_engine, site, 1)
    assert dispatcher.dispatch_pending() == 0
    assert len(told) == 1


class _Refusing:
    """A bus whose broker refuses every publish (as one past a queue's length limit)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    def publish_many(self, exchange: str, messages: list[Any]) -> list[Any]:
        from tme.errors import BusError

        return [BusError("refused by the broker") for _ in messages]


def test_a_backlog_is_published_higher_priority_first_then_in_the_order_written(
    app_engine, bus, site, monkeypatch
):
    monkeypatch.setattr("tme.controller.dispatcher.BATCH", 3)
    monkeypatch.setattr(
        "tme.controller.dispatcher.UNPUBLISHED", dispatcher_module.UNPUBLISHED.limit(3)
    )
    priorities = [1, 1, 9, 5, 1, 9]
    run_ids = _queue_tasks(app_engine, site, len(priorities), priorities)
    dispatcher = Dispatcher(app_engine, bus)  # not started: its passes are made here
    with _commands_of(bus, site) as collector:
        assert dispatcher.dispatch_pending() == 3  # the first batch: the highest three
        first = collector.wait_for(3)
        assert [(c.id, c.priority) for c in first] == [
            (run_ids[2], 9),
            (run_ids[5], 9),
            (run_ids[3], 5),
        ]
        assert dispatcher.dispatch_pending() == 3
        commands = collector.wait_for(6)
    assert [c.id for c in commands[3:]] == [run_ids[0], run_ids[1], run_ids[4]]


def test_a_stopping_dispatcher_records_the_confirms_it_holds(app_engine, bus, site, monkeypatch):
    monkeypatch.setattr("tme.controller.dispatcher.RECORD_DELAY_S", 3600.0)
    run_ids = _queue_tasks(app_engine, site, 2)
    with _commands_of(bus, site) as collector, _dispatching(app_engine, bus) as dispatcher:
        collector.wait_for(2)
        wait_until(lambda: dispatcher.held == 2, what="both confirms held")
        assert _states(app_engine, run_ids) == {"queued"}
    assert _states(app_engine, run_ids) == {"dispatched"}


def test_event_consumer_dead_letters_garbage_and_applies_events_once(app_engine, bus, site):
    (run_id,) = _queue_tasks(app_engine, site, 1)
    consumer = EventConsumer(app_engine, bus, queue=f"tme.test.events.{site}", binding=f"{site}.#")
    batches: list[list[Any]] = []

    def broken(_messages: list[Any], _applied: Any) -> None:
        raise RuntimeError("a listener's bug")

    def told_of(messages: list[Any], _applied: Any) -> None:
        batches.append(messages)

    consumer.batch_listeners.extend([broken, told_of])  # the broken one stops nothing
    consumer.start()
    key = f"{site}.skid-a.accepted"
    accepted = Event(command_id=run_id, type="accepted", site=site, agent="skid-a")
    command_json = Command(
        id=run_id,
        task_id=1,
        site=site,
        agent="skid-a",
        op="noop",
        timeout_s=1,
        not_after=accepted.at,
    ).to_json()
    try:
        for garbage in (b"not json", b"[]", b'{"kind": "event", "v": 99}', command_json):
            bus.publish(EVENTS_EXCHANGE, key, garbage)
        bus.publish(EVENTS_EXCHANGE, key, accepted.to_json())
        bus.publish(EVENTS_EXCHANGE, key, accepted.to_json())  # a redelivered duplicate
        started = Event(command_id=run_id, type="started", site=site, agent="skid-a")
        bus.publish(EVENTS_EXCHANGE, key, started.to_json())
        wait_until(lambda: _states(app_engine, [run_id]) == {"running"}, what="running")
        told = lambda: [m.type for batch in batches for m in batch]  # noqa: E731
        wait_until(lambda: "started" in told(), what="batch listeners told of the events")
    finally:
        consumer.stop()
    with session_scope(app_engine) as session:
        events = session.exec(
            select(RunEvent).where(RunEvent.run_id == run_id, RunEvent.to_state == "accepted")
        ).all()
        assert len(events) == 1


def test_a_gateways_event_batch_is_applied_in_order_and_a_bad_one_dead_lettered(
    app_engine, bus, site, monkeypatch
):
    """A batch's events apply like single ones (transactions of MAX_BATCH events: 2 here);
    a batch holding another site's event is dead-lettered whole, and the consumer goes on."""
    monkeypatch.setattr("tme.controller.event_consumer.MAX_BATCH", 2)
    first, second = _queue_tasks(app_engine, site, 2)
    consumer = EventConsumer(app_engine, bus, queue=f"tme.test.events.{site}", binding=f"{site}.#")
    consumer.start()

    def event(run_id: str, type_: str, event_site: str = site) -> bytes:
        return Event(command_id=run_id, type=type_, site=event_site, agent="skid-a").to_json()

    try:
        foreign_id, foreign = pack_events(site, [event(second, "accepted", "elsewhere")])
        bus.publish(EVENTS_EXCHANGE, batch_routing_key(site), foreign, foreign_id)
        types = ["delivered", "accepted", "started", "succeeded"]
        batch_id, body = pack_events(site, [event(first, t) for t in types])
        bus.publish(EVENTS_EXCHANGE, batch_routing_key(site), body, batch_id)
        bus.publish(EVENTS_EXCHANGE, batch_routing_key(site), body, batch_id)  # redelivered
        wait_until(lambda: _states(app_engine, [first]) == {"succeeded"}, what="succeeded")
    finally:
        consumer.stop()
    with session_scope(app_engine) as session:
        hops = session.exec(
            select(RunEvent.to_state).where(RunEvent.run_id == first).order_by(col(RunEvent.id))
        ).all()
        assert list(hops)[-4:] == ["delivered", "accepted", "running", "succeeded"]
        assert len(hops) == len(set(hops))  # the redelivered batch changed nothing
        assert session.get(Run, second).state == "queued"  # type: ignore[union-attr]


def test_an_event_that_cannot_be_applied_is_requeued_alone(app_engine, bus, site, monkeypatch):
    """One event fails to apply: it is retried on its own and dead-lettered past the
    delivery limit, while the good events delivered with it are applied and acked."""
    run_ids = _queue_tasks(app_engine, site, 10)
    events = [Event(command_id=r, type="accepted", site=site, agent="skid-a") for r in run_ids]
    bad = events[4]
    apply_messages = event_consumer.apply_messages

    def apply_all_but_the_bad_one(session: Any, messages: list[Any]) -> Any:
        if any(m.id == bad.id for m in messages if isinstance(m, Event)):
            raise RuntimeError("this event cannot be applied")
        return apply_messages(session, messages)

    monkeypatch.setattr(event_consumer, "apply_messages", apply_all_but_the_bad_one)
    with _consumed_after_publishing(app_engine, bus, site, events) as (_, dead):
        good = [r for r in run_ids if r != bad.command_id]
        wait_until(lambda: [d.message_id for d in dead] == [bad.id], what="the bad one dead")
        wait_until(lambda: _states(app_engine, good) == {"accepted"}, what="the good applied")
    assert _states(app_engine, [bad.command_id]) == {"queued"}
    with session_scope(app_engine) as session:
        hops = session.exec(
            select(RunEvent).where(col(RunEvent.run_id).in_(good), RunEvent.to_state == "accepted")
        ).all()
        assert len(hops) == len(good)


def test_events_are_held_through_a_database_outage_not_dead_lettered(
    app_engine, bus, site, monkeypatch
):
    """While the database is unreachable the consumer keeps its deliveries and tries
    again; requeued instead, each try would spend a redelivery and the events would be
    dead-lettered long before a database restart is over."""
    run_ids = _queue_tasks(app_engine, site, 3)
    events = [Event(command_id=r, type="accepted", site=site, agent="skid-a") for r in run_ids]
    apply_messages, tries = event_consumer.apply_messages, []

    def down_for_a_while(session: Any, messages: list[Any]) -> Any:
        tries.append(len(messages))
        if len(tries) <= 12:  # far past the queue's delivery limit
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        return apply_messages(session, messages)

    monkeypatch.setattr(event_consumer, "apply_messages", down_for_a_while)
    monkeypatch.setattr(event_consumer, "OUTAGE_PAUSE_MIN_S", 0.01)
    monkeypatch.setattr(event_consumer, "OUTAGE_PAUSE_MAX_S", 0.02)
    with _consumed_after_publishing(app_engine, bus, site, events) as (_, dead):
        wait_until(lambda: _states(app_engine, run_ids) == {"accepted"}, what="all applied")
    assert len(tries) > 12 and dead == []


@pytest.mark.external_service
def test_events_are_held_while_the_database_refuses_writes_not_dead_lettered(
    bus: Bus, site: str, pg_database: PgDatabase
) -> None:
    """A database that answers but refuses writes (a primary demoted to a standby, a URL
    leading to a standby: SQLSTATE 25006, which psycopg raises as an InternalError) is an
    outage too: the consumer holds its deliveries, probes until the database takes writes
    and applies them then, although its pooled connections were made read-only. Taken
    for a bad batch, each delivery was requeued and dead-lettered past the delivery
    limit within milliseconds: the agents' results were lost."""
    engine = make_engine(pg_database.url())
    try:
        upgrade(engine)
        run_ids = _queue_tasks(engine, site, 3)
        events = [Event(command_id=r, type="accepted", site=site, agent="skid-a") for r in run_ids]
        pg_database.refuse_writes()
        with _consumed_after_publishing(engine, bus, site, events) as (consumer, dead):
            wait_until(lambda: consumer.probing or dead, what="the events held or dead")
            assert dead == []
            assert _states(engine, run_ids) == {"queued"}  # its reads still work
            pg_database.take_writes()
            wait_until(lambda: _states(engine, run_ids) == {"accepted"}, what="all applied")
        assert dead == []
    finally:
        engine.dispose()


@contextmanager
def _consumed_after_publishing(
    engine: Any, bus: Bus, site: str, events: list[Event]
) -> Iterator[tuple[EventConsumer, list[Delivery]]]:
    """The site's `accepted` events published to a queue of the test's own, then an
    event consumer started on it (so they come in batches); yields the consumer and what
    the queue dead-letters, and stops the consumer after the block."""
    queue, tap = f"tme.test.events.{site}", f"tme.test.dead.{site}"
    bus.declare_queue(queue, EVENTS_EXCHANGE, f"{site}.#")
    bus.declare_queue(tap, DEAD_LETTER_EXCHANGE, f"{site}.#")
    dead: list[Delivery] = []
    tap_consumer = bus.consume(tap, dead.append)
    consumer = EventConsumer(engine, bus, queue=queue, binding=f"{site}.#")
    try:
        for event in events:
            bus.publish(EVENTS_EXCHANGE, f"{site}.skid-a.accepted", event.to_json(), event.id)
        consumer.start()
        yield consumer, dead
    finally:
        consumer.stop()
        tap_consumer.stop()
        bus.delete_queue(tap)


def test_a_dispatcher_holding_confirms_pauses_between_tries_while_the_database_is_down(
    app_engine, bus, site, monkeypatch
):
    """Recording confirms it holds fails while the database is unreachable: the next try
    waits RETRY_PAUSE_S. (It was due at once, again and again: hundreds of passes a
    second, a traceback each, all through the outage, starving the controller.)"""
    run_ids = _queue_tasks(app_engine, site, 2)
    tries: list[float] = []

    def down(_self: Any, _failed: Any) -> None:
        tries.append(time.monotonic())
        raise OperationalError("UPDATE outbox", {}, ConnectionError("server closed the connection"))

    with _commands_of(bus, site) as collector, _dispatching(app_engine, bus):
        monkeypatch.setattr(Dispatcher, "_record", down)
        collector.wait_for(2)
        wait_until(lambda: tries, what="a try to record the confirms")
        # Watch it for a second of the outage: a pass or two, not hundreds.
        wait_until(lambda: time.monotonic() - tries[0] >= 1.0, timeout=5)
        assert len(tries) <= 2, f"{len(tries)} tries in a second"
        monkeypatch.undo()  # the database is back
        wait_until(lambda: _states(app_engine, run_ids) == {"dispatched"}, timeout=10)
