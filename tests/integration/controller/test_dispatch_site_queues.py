"""The dispatcher declares site queues, because a gateway may declare nothing: for the
sites the database knows at start-up, for a site whose gateway announces itself, and
again for a site whose queue was deleted. On the memory bus and the real RabbitMQ."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlmodel import col, select

from tme.bus import Bus, open_bus
from tme.config import Settings
from tme.controller.dispatcher import Dispatcher
from tme.controller.outbox import OutboxWriter
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Site
from tme.protocol import Presence, site_queue
from tme.schemas import TaskCreate


@pytest.fixture
def sites() -> list[str]:
    return [f"site-{uuid.uuid4().hex[:10]}" for _ in range(2)]


@pytest.fixture
def bus(bus_url: str, sites: list[str]) -> Iterator[Bus]:
    bus = open_bus(bus_url, confirm_timeout_s=10)
    bus.start()
    yield bus
    for site in sites:
        bus.delete_queue(site_queue(site))
    bus.stop()


def _queue_task(engine: Any, site: str) -> None:
    hook = OutboxWriter(Settings(), threading.Event())
    body = TaskCreate(name="noop", op="noop", target={"site": site, "agent": "skid-a"})
    with session_scope(engine) as session:
        create_task(session, body, on_run_ready=hook)


def test_known_sites_get_their_queues_at_start_up(app_engine, bus, sites) -> None:
    with session_scope(app_engine) as session:
        for site in sites:
            session.add(Site(name=site))
    assert not any(bus.queue_exists(site_queue(site)) for site in sites)
    Dispatcher(app_engine, bus).dispatch_pending()  # nothing to dispatch, sites declared
    assert all(bus.queue_exists(site_queue(site)) for site in sites)


def test_a_gateway_announcing_itself_gets_its_site_queue(app_engine, bus, sites) -> None:
    gateway_site, agent_site = sites
    dispatcher = Dispatcher(app_engine, bus)
    dispatcher.on_message(Presence(site=gateway_site, agent="gw", role="gateway", state="online"))
    dispatcher.on_message(Presence(site=agent_site, agent="skid-a", state="online"))
    assert dispatcher.wake.is_set()  # the dispatcher thread would run now
    dispatcher.dispatch_pending()
    assert bus.queue_exists(site_queue(gateway_site))
    assert not bus.queue_exists(site_queue(agent_site))  # an agent alone does not ask for it


def test_a_deleted_site_queue_is_declared_again(app_engine, bus, sites) -> None:
    site = sites[0]
    dispatcher = Dispatcher(app_engine, bus)
    _queue_task(app_engine, site)
    assert dispatcher.dispatch_pending() == 1  # declared before its first command
    bus.delete_queue(site_queue(site))
    _queue_task(app_engine, site)
    assert dispatcher.dispatch_pending() == 0  # unroutable: kept in the outbox
    (kept,) = _outbox(app_engine, published=False)
    assert kept.attempts == 1 and "no queue bound" in kept.last_error
    assert dispatcher.dispatch_pending() == 1  # declared again, then published
    assert bus.queue_exists(site_queue(site))
    assert _outbox(app_engine, published=False) == []
    sent = {row.id: row for row in _outbox(app_engine, published=True)}[kept.id]
    assert sent.attempts == 2 and sent.published_at is not None


def _outbox(engine: Any, *, published: bool) -> list[Outbox]:
    with session_scope(engine) as session:
        column = col(Outbox.published_at)
        where = column.is_not(None) if published else column.is_(None)
        return list(session.exec(select(Outbox).where(where)).all())
