"""The RabbitMQ queues tests declare are deleted after them (tests/queue_ledger.py), and
those of a session that died are swept by the next one, leaving live sessions' alone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from queue_ledger import QueueLedger, sweep
from rabbitmq_admin import consumer_count
from waiting import wait_until

from tme.bus import Bus, open_bus
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.protocol import site_queue

pytestmark = pytest.mark.external_service

# what the first test below left declared, for the one after it
LEFT: dict[str, str] = {}


@pytest.fixture
def bus(rabbitmq_url: str) -> Iterator[Bus]:
    bus = open_bus(rabbitmq_url)
    bus.start()
    yield bus
    bus.stop()


def unique_site() -> str:
    return f"ledger-{uuid.uuid4().hex[:12]}"


def test_a_test_declares_a_site_queue_and_leaves_it(bus: Bus) -> None:
    site = unique_site()
    bus.declare_site(site)  # not deleted here: the session's ledger does it after the test
    assert bus.queue_exists(site_queue(site))
    LEFT["queue"] = site_queue(site)


def test_the_queue_the_test_before_left_is_gone(bus: Bus) -> None:
    if "queue" not in LEFT:
        pytest.skip("runs after test_a_test_declares_a_site_queue_and_leaves_it")
    assert not bus.queue_exists(LEFT["queue"])


def test_a_dead_sessions_idle_queues_are_swept_not_its_consumed_ones_nor_a_live_ones(
    bus: Bus, rabbitmq_url: str, tmp_path: Path
) -> None:
    idle, consumed, live_one = (site_queue(unique_site()) for _ in range(3))
    for queue in (idle, consumed, live_one):
        bus.declare_queue(queue, "tme.dispatch", f"unrouted.{uuid.uuid4().hex}")
    consumer = bus.consume(consumed, lambda message: None)
    wait_until(lambda: consumer_count(rabbitmq_url, consumed) == 1, 10, "the consumer")
    dead, live = QueueLedger(rabbitmq_url, tmp_path), QueueLedger(rabbitmq_url, tmp_path)
    dead.record(rabbitmq_url, idle)
    dead.record(rabbitmq_url, consumed)
    dead.abandon()  # as a killed session leaves it: the file, unlocked
    live.record(rabbitmq_url, live_one)

    assert sweep(rabbitmq_url, tmp_path) == {("/", consumed)}
    assert not bus.queue_exists(idle)
    assert bus.queue_exists(consumed) and bus.queue_exists(live_one)
    assert dead.path.exists()  # still naming the consumed queue

    consumer.stop()
    wait_until(lambda: consumer_count(rabbitmq_url, consumed) == 0, 10, "the consumer to go")
    assert sweep(rabbitmq_url, tmp_path) == set()
    assert not bus.queue_exists(consumed) and not dead.path.exists()
    live.close()  # the session's end
    assert not bus.queue_exists(live_one) and not live.path.exists()


def test_a_sweep_leaves_the_ledgers_of_another_broker(rabbitmq_url: str, tmp_path: Path) -> None:
    elsewhere = "amqp://guest:guest@127.0.0.1:1/%2F"
    dead = QueueLedger(elsewhere, tmp_path)
    dead.record(elsewhere, site_queue(unique_site()))
    dead.abandon()
    assert sweep(rabbitmq_url, tmp_path) == set()
    assert dead.path.exists()


def test_the_default_queues_are_never_recorded(tmp_path: Path) -> None:
    ledger = QueueLedger("amqp://guest:guest@127.0.0.1:1/%2F", tmp_path)
    ledger.record("amqp://guest:guest@127.0.0.1:1/%2F", CONTROLLER_EVENTS_QUEUE)
    ledger.record("amqp://guest:guest@127.0.0.1:1/%2F", "tme.dead.letters")
    assert ledger.live() == set()
    assert list(tmp_path.iterdir()) == []  # no declaration, no ledger file
