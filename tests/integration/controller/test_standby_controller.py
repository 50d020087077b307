"""Two controllers on one PostgreSQL database, over the real RabbitMQ: one leads, the
other stands by.

Only the leader publishes the outbox and sends notifications; the standby serves the
API, and what its API queues the leader publishes at once (woken through the
database: its own poll is made too slow here to find it). When the leader stops, the
standby takes over: it publishes what the leader left queued and sends what was due.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until

from tme.bus import Delivery, open_bus
from tme.config import Settings
from tme.controller import dispatcher as dispatcher_module
from tme.controller.app import create_app
from tme.controller.notifications.models import NotificationDelivery
from tme.controller.notifications.notifier import Notifier
from tme.controller.scheduling import Scheduling
from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.models import Run
from tme.controller.wake_channel import HOUSEKEEPING, OUTBOX, SETTLE, WakeListener, notify
from tme.protocol import Command, site_queue

pytestmark = pytest.mark.external_service


@pytest.fixture
def engine(pg_database: Any) -> Iterator[Engine]:
    engine = make_engine(pg_database.url())
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def site() -> str:
    return f"standby-{uuid.uuid4().hex[:8]}"


class Controller:
    """One controller app on the shared database, with its own bus connection."""

    def __init__(self, settings: Settings, engine: Engine, token: str) -> None:
        self.client = TestClient(create_app(settings, engine=engine))
        self.client.headers["Authorization"] = f"Bearer {token}"
        self.published = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Controller:
        self.client.__enter__()
        self.runtime.dispatcher.confirm_listeners.append(self._confirmed)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.__exit__(*exc)

    @property
    def runtime(self) -> Any:
        return self.client.app.state.runtime  # type: ignore[attr-defined]

    @property
    def notifier(self) -> Notifier:
        return self.client.app.state.notifier  # type: ignore[attr-defined,no-any-return]

    def _confirmed(self, count: int, _seconds: float) -> None:
        with self._lock:
            self.published += count

    def role(self) -> str:
        return str(self.client.get("/readyz").json().get("role"))

    def create(self, site: str, n: int) -> str:
        answer = self.client.post(
            "/api/v1/tasks",
            json={
                "name": f"read {n}",
                "op": "modbus.read",
                "target": {"site": site, "agent": "skid-a", "device": "pump1"},
                "params": {"point": "speed_setpoint"},
            },
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["latest_run_id"])


@pytest.fixture
def settings(pg_database: Any, rabbitmq_url: str) -> Settings:
    return Settings(
        database={"url": pg_database.url()},
        broker={"url": rabbitmq_url, "events_queue": f"tme.test.events.{uuid.uuid4().hex[:8]}"},
    )


@pytest.fixture
def token(engine: Engine) -> str:
    return make_user_with_token(engine, "admin", "admin", "*").token


@pytest.fixture
def commands(rabbitmq_url: str, site: str) -> Iterator[list[Command]]:
    """The commands that reach the site's queue, as its gateway would take them."""
    received: list[Command] = []
    bus = open_bus(rabbitmq_url)
    bus.start()

    def take(delivery: Delivery) -> None:  # returning acks it
        received.append(Command.from_json(delivery.body))

    bus.declare_site(site)
    consumer = bus.consume(site_queue(site), take)
    yield received
    consumer.stop()
    bus.delete_queue(site_queue(site))
    bus.stop()


def _states(engine: Engine, run_ids: list[str]) -> list[str]:
    with Session(engine) as session:
        return [r.state for r in session.exec(select(Run).where(Run.id.in_(run_ids)))]  # type: ignore[attr-defined]


def test_the_leader_publishes_what_the_standby_queues_and_the_standby_takes_over(
    settings: Settings,
    engine: Engine,
    token: str,
    site: str,
    commands: list[Command],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Neither dispatcher polls in this test's time: the standby's rows reach the leader
    # through the database's notification, or not at all.
    monkeypatch.setattr(dispatcher_module, "IDLE_POLL_S", 300.0)
    with ExitStack() as stack:
        leader = stack.enter_context(Controller(settings, engine, token))
        wait_until(lambda: leader.role() == "leader", timeout=10, what="the first to lead")
        standby = stack.enter_context(Controller(settings, engine, token))
        assert standby.role() == "standby"
        wait_until(standby.runtime.wakes.listening.is_set, timeout=10, what="listening")
        wait_until(leader.runtime.wakes.listening.is_set, timeout=10, what="listening")

        run_ids = [standby.create(site, n) for n in range(5)]
        wait_until(
            lambda: _states(engine, run_ids) == ["dispatched"] * 5,
            timeout=15,
            what="the standby's runs dispatched by the leader",
        )
        assert (leader.published, standby.published) == (5, 0)
        assert standby.runtime.dispatcher.publish_pending() == 0  # it never publishes
        wait_until(lambda: len(commands) == 5, timeout=10, what="five commands on the queue")

        # The leader queues a run in its last moments, and stops (releasing its lease)
        # without publishing it: the standby takes over and publishes it at once, then
        # what its own API queues.
        leader.runtime.dispatcher.stop()
        left = leader.create(site, 5)
        stack.pop_all()
        leader.__exit__(None, None, None)
        wait_until(lambda: standby.role() == "leader", timeout=10, what="the standby to lead")
        wait_until(
            lambda: _states(engine, [left]) == ["dispatched"], timeout=15, what="the left run"
        )
        late = standby.create(site, 6)
        wait_until(
            lambda: _states(engine, [late]) == ["dispatched"], timeout=15, what="the late run"
        )
        assert standby.published == 2
        wait_until(lambda: len(commands) == 7, timeout=10, what="seven commands on the queue")
        standby.__exit__(None, None, None)
    assert sorted(c.id for c in commands) == sorted([*run_ids, left, late])  # each once


def test_only_the_leader_sends_notifications(
    settings: Settings, engine: Engine, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[Notifier, int]] = []

    def send(notifier: Notifier, delivery: NotificationDelivery, _secret: str) -> None:
        sent.append((notifier, delivery.id or 0))

    monkeypatch.setattr(Notifier, "_send", send)
    with ExitStack() as stack:
        leader = stack.enter_context(Controller(settings, engine, token))
        wait_until(lambda: leader.role() == "leader", timeout=10, what="the first to lead")
        standby = stack.enter_context(Controller(settings, engine, token))
        leader.notifier.stop()  # it leads, but sends nothing: only the standby could
        delivery_id = _due_delivery(engine)
        standby.notifier.run_pass()  # what its own thread does, here at a known time
        assert not standby.notifier._in_flight and sent == []
        assert _status(engine, delivery_id) == "pending"

        stack.pop_all()
        leader.__exit__(None, None, None)  # the standby takes over, and sends it
        wait_until(lambda: _status(engine, delivery_id) == "delivered", timeout=15, what="sent")
        assert sent == [(standby.notifier, delivery_id)]
        standby.__exit__(None, None, None)


def _due_delivery(engine: Engine) -> int:
    with Session(engine) as session:
        row = NotificationDelivery(
            dedup_key=f"test|{uuid.uuid4().hex}",
            rule="ops hook",
            channel="webhook",
            target="https://hooks.plant.example/tme",
            event="failed",
            payload={"event": "failed"},
        )
        session.add(row)
        session.commit()
        return row.id or 0


def _status(engine: Engine, delivery_id: int) -> str | None:
    with Session(engine) as session:
        row = session.get(NotificationDelivery, delivery_id)
        return row.status if row else None


def test_a_wake_notified_reaches_the_part_it_names(engine: Engine) -> None:
    heard: list[str] = []
    listener = WakeListener(
        engine, {part: (lambda p=part: heard.append(p)) for part in (OUTBOX, SETTLE, HOUSEKEEPING)}
    )
    listener.start()
    try:
        wait_until(listener.listening.is_set, timeout=10, what="listening")
        heard.clear()  # a listener wakes every part once when it starts listening
        notify(engine, OUTBOX)
        wait_until(lambda: heard == [OUTBOX], timeout=10, what="the outbox's wake")
        # A controller that does not lead has the leader settle its runs.
        standing_by = Scheduling(engine, None, Settings())
        assert not standing_by.leading
        standing_by.wake(housekeeping=True)
        wait_until(lambda: heard[1:] == [HOUSEKEEPING], timeout=10, what="housekeeping")
    finally:
        listener.stop()
