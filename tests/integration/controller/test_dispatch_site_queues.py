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
from waiting import wait_until

from tme.bus import Bus, open_bus
from tme.config import Settings
from tme.controller.dispatcher import Dispatcher
from tme.controller.outbox import OutboxWriter
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Site
from tme.protocol import DEAD_LETTER_EXCHANGE, Presence, site_queue
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


@pytest.mark.parametrize("known", [False, True], ids=["new-site", "known-site"])
def test_a_site_whose_queue_cannot_be_declared_holds_up_no_other_site(
    app_engine, bus, bus_url, sites, monkeypatch, known
) -> None:
    """Its queue exists with other arguments (the broker refuses the declare): its rows
    count a failed attempt each and wait; the other site's rows are published. Whether
    the site is new or known to the database (declared before the batch is read)."""
    monkeypatch.setattr("tme.controller.dispatcher.RETRY_PAUSE_S", 1.0)  # keeps the test short
    bad, good = sites
    other = open_bus(bus_url)  # a queue of another kind (no delivery limit) by its name
    other.start()
    other.declare_queue(site_queue(bad), DEAD_LETTER_EXCHANGE, f"{bad}.stray")
    other.stop()
    if known:
        with session_scope(app_engine) as session:
            session.add(Site(name=bad))
    _queue_task(app_engine, bad)  # the oldest rows, at the front of every batch
    _queue_task(app_engine, good)
    dispatcher = Dispatcher(app_engine, bus)

    assert dispatcher.dispatch_pending() == 1
    (kept,) = _outbox_of(app_engine, bad)
    assert kept.published_at is None and kept.attempts == 1 and kept.last_error
    (sent,) = _outbox_of(app_engine, good)
    assert sent.published_at is not None

    _queue_task(app_engine, good)
    assert dispatcher.dispatch_pending() == 1  # the bad site waits its turn to retry
    assert _outbox_of(app_engine, bad)[0].attempts == 1

    bus.delete_queue(site_queue(bad))  # the operator removes the stray queue
    wait_until(lambda: dispatcher.dispatch_pending() == 1, what="the bad site retried")
    (sent,) = _outbox_of(app_engine, bad)
    assert sent.published_at is not None and sent.attempts == 2


def _outbox_of(engine: Any, site: str) -> list[Outbox]:
    with session_scope(engine) as session:
        return list(session.exec(select(Outbox).where(Outbox.site == site)).all())
