"""The controller's background loops through a PostgreSQL outage: the database goes
away (its address refuses connections, as when it is down or restarting) and comes
back at the same address.

Each loop logs the outage once, with its traceback, not once per pass (twice a second
for the scheduler and the notifier, thousands of identical tracebacks in an hour), and
says once that it recovered. The event consumer applies the events it held as soon as
the database is back, not at its next try seconds later.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from moved_runs import run_state, runs_moved
from sqlalchemy.engine import Engine
from tcp_relay import TcpRelay
from waiting import wait_until

from tme.bus import Delivery, open_bus
from tme.config import Settings
from tme.controller import event_consumer
from tme.controller.change_feed import ChangeFeed
from tme.controller.dispatcher import Dispatcher
from tme.controller.event_consumer import EventConsumer
from tme.controller.notifications.notifier import Notifier
from tme.controller.scheduling import Scheduling
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.prune import Pruner
from tme.protocol import Event
from tme.schemas import TaskCreate
from tme.ui import live

pytestmark = pytest.mark.external_service

POSTGRESQL = ("127.0.0.1", 5432)
PASSES = 20  # ten seconds of an outage for the loops that tick every half second


class Database:
    """The session's PostgreSQL database, reached through a relay that can go away
    (new connections refused, open ones cut) and come back at the same address."""

    def __init__(self, url: str) -> None:
        assert ":5432/" in url
        direct = make_engine(url)
        upgrade(direct)
        direct.dispose()
        self.relay = TcpRelay(POSTGRESQL)
        self.relay.open()
        self.engine = make_engine(url.replace(":5432/", f":{self.relay.port}/"))

    def go_away(self) -> None:
        self.relay.close()

    def come_back(self) -> None:
        self.relay = TcpRelay(POSTGRESQL, port=self.relay.port)
        self.relay.open()

    def close(self) -> None:
        self.relay.close()
        self.engine.dispose()


@pytest.fixture
def database(postgres_database_url: str) -> Iterator[Database]:
    db = Database(postgres_database_url)
    yield db
    db.close()


@dataclass
class Loop:
    """One pass of a loop (as its thread runs it), what its lines call a pass, its
    logger, and what stops what the pass started."""

    run_pass: Callable[[], object]
    what: str
    logger: str
    stop: Callable[[], None] = lambda: None


def _scheduling(engine: Engine, _monkeypatch: pytest.MonkeyPatch) -> Loop:
    scheduling = Scheduling(engine, None, Settings())
    return Loop(scheduling.run_pass, "scheduling pass", "tme.scheduler", scheduling.stop)


def _notifier(engine: Engine, _monkeypatch: pytest.MonkeyPatch) -> Loop:
    notifier = Notifier(engine, Settings(), ChangeFeed(engine))
    return Loop(notifier.run_pass, "notifier pass", "tme.notify")


def _dispatcher(engine: Engine, _monkeypatch: pytest.MonkeyPatch) -> Loop:
    bus = open_bus(f"memory://outage-{uuid.uuid4().hex[:8]}")
    bus.start()
    dispatcher = Dispatcher(engine, bus)
    return Loop(dispatcher.run_pass, "dispatch pass", "tme.dispatcher", bus.stop)


def _pruner(engine: Engine, _monkeypatch: pytest.MonkeyPatch) -> Loop:
    pruner = Pruner(engine, timedelta(days=30))
    return Loop(pruner.run_pass, "pruning old rows", "tme.prune")


def _live_hub(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Loop:
    """The dashboard's timer: NiceGUI logged a traceback for each tick that raised."""

    async def io_bound(func: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(func, *args)

    feed = ChangeFeed(engine)
    monkeypatch.setattr(live, "dashboard", lambda: SimpleNamespace(feed=feed))
    monkeypatch.setattr(live, "run", SimpleNamespace(io_bound=io_bound))
    hub = live.LiveHub()
    return Loop(lambda: asyncio.run(hub.tick()), "dashboard live update", "tme.ui")


LOOPS = [_scheduling, _notifier, _dispatcher, _pruner, _live_hub]


@pytest.mark.parametrize("make_loop", LOOPS, ids=lambda make: make.__name__.strip("_"))
def test_a_loop_logs_an_outage_once_and_its_end_once(
    make_loop: Callable[[Engine, pytest.MonkeyPatch], Loop],
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop = make_loop(database.engine, monkeypatch)
    try:
        loop.run_pass()  # connected: a pass as any other
        caplog.set_level(logging.INFO, logger=loop.logger)
        caplog.clear()
        database.go_away()
        for _ in range(PASSES):
            loop.run_pass()
        lines = _lines(caplog, loop.logger)
        assert lines == [(logging.ERROR, f"{loop.what} failed", True)], lines
        caplog.clear()
        database.come_back()
        loop.run_pass()
        said = [message for _, message, _ in _lines(caplog, loop.logger) if "recover" in message]
        assert len(said) == 1, said
        assert said[0].startswith(f"{loop.what} recovered after {PASSES} failed passes over ")
    finally:
        loop.stop()


def _lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str, bool]]:
    """(level, message, with a traceback) of each line `logger` wrote."""
    return [
        (r.levelno, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == logger
    ]


def test_events_held_through_an_outage_are_applied_as_soon_as_the_database_is_back(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The consumer probes a database that does not answer every PROBE_S and applies
    the events it holds once a probe is answered. It tried again after a pause doubling
    up to 10 s, so events waited up to that long after the database was back; here that
    pause is a minute, so only the probe applies them within the deadline."""
    monkeypatch.setattr(event_consumer, "OUTAGE_PAUSE_MIN_S", 60.0)
    monkeypatch.setattr(event_consumer, "OUTAGE_PAUSE_MAX_S", 60.0)
    caplog.set_level(logging.INFO, logger="tme.events")
    site = f"site-{uuid.uuid4().hex[:10]}"
    target = {"site": site, "agent": "skid-a", "device": "pump1"}
    read = TaskCreate(name="read", op="modbus.read", target=target, params={"point": "level"})
    run_ids = runs_moved(database.engine, [read] * 3)
    deliveries = [
        Delivery(event.to_json(), f"{site}.skid-a.accepted", event.id)
        for event in (
            Event(command_id=r, type="accepted", site=site, agent="skid-a") for r in run_ids
        )
    ]
    consumer = EventConsumer(database.engine, open_bus(f"memory://outage-{site}"))
    outcomes: list[Exception | None] = []
    database.go_away()
    applying = threading.Thread(target=lambda: outcomes.extend(consumer.handle_batch(deliveries)))
    applying.start()
    try:
        wait_until(lambda: consumer.probing, what="the consumer waiting for the database")
        database.come_back()
        # Far below the minute of a retry without the probe; far above its half second.
        applying.join(5)
        assert not applying.is_alive(), "the events are still held 5 s after the database is back"
    finally:
        consumer.stop()  # one still holding them gives up (the test failed)
        applying.join(10)
    assert outcomes == [None, None, None]
    assert consumer.returns_noticed == 1
    assert {run_state(database.engine, r) for r in run_ids} == {"accepted"}
    said = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "tme.events"]
    assert said[0][0] == logging.ERROR and said[0][1].startswith("applying events failed")
    assert said[-1][1].startswith("applying events recovered after 1 failed pass over ")
    assert len(said) == 2


def test_a_scheduler_leading_when_the_database_goes_away_still_stops(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """Releasing the scheduler lease at stop fails without a database: the lease is
    left to expire. The error escaped the stop, so the controller's stop skipped the
    dispatcher, the event consumer and the bus behind it."""
    scheduling = Scheduling(database.engine, None, Settings())
    scheduling.run_pass()
    assert scheduling.leading
    database.go_away()
    scheduling.stop()
    assert not scheduling.leading
    said = [r.getMessage() for r in caplog.records if r.name == "tme.scheduler"]
    assert any("could not release the scheduler lease" in line for line in said), said
