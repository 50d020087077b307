"""Faults on the controller's side of the whole path, mid-load, on PostgreSQL and RabbitMQ.

The promise under test (docs: DESIGN.md, "The path of a task"): a run moves to queued
together with its outbox row; a row is marked published only after RabbitMQ confirmed
it, so one never confirmed is published again; an event is acked only after the
transaction applying it committed, so one never committed is delivered again, and
applying it twice changes nothing. Losing the database or the controller process loses
no command and no event, and runs nothing twice at the machine.

Each test has a PostgreSQL database of its own and runs the load and the checks of
chaos_load (every run final, succeeded exactly once, each value written to the machine
at most once), breaking the controller's side while the tasks flow.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chaos_load import Site, assert_each_succeeded_once, running_site
from chaos_parts import Controller, ControllerProcess, DeadLetterTap, queue_depths
from pg_database import PgDatabase
from sqlalchemy import text
from tcp_relay import TcpRelay
from waiting import wait_until

import tme
from tme.controller.store.db import make_engine

pytestmark = pytest.mark.external_service

DB_OUTAGE_S = 10.0  # how long the database stays unreachable in the outage test
RABBITMQ = ("127.0.0.1", 5672)
POSTGRESQL = ("127.0.0.1", 5432)


@pytest.fixture
def name() -> str:
    return f"ctlchaos-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def dead_letters(rabbitmq_url: str, name: str) -> Iterator[DeadLetterTap]:
    """The site's commands and events dead-lettered during the test."""
    with DeadLetterTap(rabbitmq_url, name) as tap:
        yield tap


Parts = tuple[Path, str, PgDatabase, str, DeadLetterTap]


@pytest.fixture
def parts(
    tmp_path: Path,
    rabbitmq_url: str,
    pg_database: PgDatabase,
    name: str,
    dead_letters: DeadLetterTap,
) -> Parts:
    """What each test here works with: its folder, the broker, its database, its site's
    name and the tap of its dead letters."""
    return tmp_path, rabbitmq_url, pg_database, name, dead_letters


def test_postgresql_ends_the_controllers_connections_mid_load(parts: Parts) -> None:
    """PostgreSQL terminates every backend of the controller (API, dispatcher, event
    consumer, scheduler) twice while tasks flow, as a failover or an administrator
    does. Guarantee: every run succeeds exactly once, each command writes to the
    machine once, nothing is dead-lettered, and the controller serves REST after."""
    tmp_path, rabbitmq_url, database, name, dead_letters = parts
    controller = Controller(name, rabbitmq_url, database.url(), f"{name}-ctl")
    with running_site(tmp_path, rabbitmq_url, name, controller) as site:
        load = site.start_load(ride_out_outages=True)
        site.wait_for_writes(40)
        assert database.terminate_backends() > 0
        site.wait_for_writes(110)
        assert database.terminate_backends() > 0
        assert_each_succeeded_once(site, site.settle(load))
        assert dead_letters.count() == 0
        with tme.Client(controller.url, controller.token, timeout=10) as client:
            assert client.tasks.create(name="after the faults", op="external").id


def test_the_controller_is_killed_mid_load_and_restarted_on_its_database(parts: Parts) -> None:
    """SIGKILL of the controller process while RabbitMQ has not confirmed a batch of
    commands (its link to RabbitMQ hangs: they wait in the outbox, published or not)
    and answers to commands it sent wait for it, some delivered and unacked; a restart
    on the same database. Guarantee:
    every command never confirmed is published again, every event delivered again is
    applied once: each run succeeds exactly once and writes to the machine once."""
    tmp_path, rabbitmq_url, database, name, dead_letters = parts
    relay = TcpRelay(RABBITMQ)
    relay.open()
    bus_url = rabbitmq_url.replace(f":{RABBITMQ[1]}/", f":{relay.port}/")
    assert bus_url != rabbitmq_url, "the controller's RabbitMQ is to be reached through the relay"
    controller = ControllerProcess(name, bus_url, database.url(), tmp_path / "controller.log")
    try:
        with running_site(tmp_path, rabbitmq_url, name, controller) as site:
            load = site.start_load(ride_out_outages=True)
            site.wait_for_writes(40)
            site.stall_agent_until_commands_wait()
            relay.pause()  # publishes and acks sent from now on wait in the relay
            site.agent.resume()  # its answers queue up for the controller
            wait_until(
                lambda: unpublished(site) >= 20,
                timeout=20,
                what="20 commands waiting for RabbitMQ's confirm",
            )
            controller.kill()
            relay.close()
            # The agent answers, for the dead controller, every command it was sent
            # (some of the stalled ones it may have run before it stalled).
            wait_until(lambda: site.journal_sent() == 0, timeout=30, what="all answered")
            relay = TcpRelay(RABBITMQ, port=relay.port)
            relay.open()
            controller.start()
            assert_each_succeeded_once(site, site.settle(load))
            assert site.unavailable["TransportError"] > 0, "the load never found it down"
            assert dead_letters.count() == 0
    finally:
        relay.close()


def test_the_database_is_unreachable_for_a_while_mid_load(parts: Parts) -> None:
    """The controller loses its database (every connection cut, new ones refused) for
    DB_OUTAGE_S while agents answer commands already sent. Guarantee: meanwhile REST
    answers 503 with Retry-After (never 500) and events are held, unacked (never
    dead-lettered); after, they are applied, every run succeeds exactly once and each
    command writes to the machine once, and REST works again."""
    tmp_path, rabbitmq_url, database, name, dead_letters = parts
    relay = TcpRelay(POSTGRESQL)
    relay.open()
    controller = Controller(name, rabbitmq_url, database.url(relay.port), f"{name}-ctl")
    direct = make_engine(database.url())
    try:
        with running_site(tmp_path, rabbitmq_url, name, controller, engine=direct) as site:
            load = site.start_load(ride_out_outages=True)
            site.wait_for_writes(40)
            site.stall_agent_until_commands_wait()
            relay.close()  # the database is gone
            outage_ends = time.monotonic() + DB_OUTAGE_S
            site.agent.resume()  # its answers reach the controller during the outage
            events_queue = f"tme.controller.events.{name}"
            with httpx.Client(base_url=controller.url, timeout=10) as http:
                headers = {"Authorization": f"Bearer {controller.token}"}

                task = site.task_ids[0]
                reads = ["/api/v1/tasks", f"/api/v1/tasks/{task}", f"/api/v1/tasks/{task}/runs"]
                reads += ["/api/v1/sites", "/tasks/", f"/task/{task}/"]

                def refused_meanwhile() -> bool:
                    for path in reads:
                        answer = http.get(path, headers=headers)
                        assert answer.status_code == 503, (path, answer.status_code, answer.text)
                        assert answer.headers.get("Retry-After"), (path, answer.headers)
                    return time.monotonic() >= outage_ends

                wait_until(refused_meanwhile, timeout=DB_OUTAGE_S + 10, interval=0.5)
                held = queue_depths(events_queue)
                assert held["unacked"] > 0, held  # held by the consumer, not requeued
                assert dead_letters.count() == 0
                relay = TcpRelay(POSTGRESQL, port=relay.port)
                relay.open()  # the database is back
                assert_each_succeeded_once(site, site.settle(load))
                assert site.unavailable["Unavailable"] > 0, "the load never found it down"
                assert dead_letters.count() == 0
                assert http.get("/api/v1/tasks", headers=headers).status_code == 200
    finally:
        relay.close()
        direct.dispose()


def unpublished(site: Site) -> int:
    """Outbox rows not marked published (never confirmed, as far as the database knows)."""
    with site.engine.connect() as db:
        query = text("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        return int(db.execute(query).scalar() or 0)
