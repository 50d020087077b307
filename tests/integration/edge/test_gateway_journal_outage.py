"""A gateway whose journal cannot be written, against the real RabbitMQ and Mosquitto.

It holds the commands it took, unacked, and journals them once it can. Returned to
RabbitMQ instead, they came back within milliseconds, failed again, and every round
counted towards the site queue's delivery limit: dead-lettered within seconds, never
run, nothing wrong with them.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pytest
from commands import make_command
from edge_helpers import journal_locked, unique
from rabbitmq_admin import ready_messages
from waiting import wait_until

from tme.agents import gateway as gateway_module
from tme.agents import journal as journal_module
from tme.agents.gateway import JOURNAL_FILE
from tme.agents.journal import Journal
from tme.bus import Delivery, topology
from tme.protocol import DEAD_LETTER_EXCHANGE, Command, cmd_topic, site_queue, site_routing_key

pytestmark = pytest.mark.external_service

# The site queue's delivery limit here: 1000 in production, reached the same way (a
# round trip of milliseconds each), only later.
LIMIT = 3
COMMANDS = 5


@pytest.fixture
def small_delivery_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """Site queues declared from now on have LIMIT (requested before site_setup)."""
    monkeypatch.setattr(topology, "SITE_DELIVERY_LIMIT", LIMIT)
    return LIMIT


def test_commands_are_held_while_the_journal_cannot_be_written_then_sent_once(
    small_delivery_limit: int,
    site_setup: dict,
    watcher_factory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT_S", 0.05)  # 5 s in production
    monkeypatch.setattr(gateway_module, "JOURNAL_RETRY_MIN_S", 0.05)
    monkeypatch.setattr(gateway_module, "JOURNAL_RETRY_MAX_S", 0.05)
    tries: Counter[str] = Counter()  # journal writes tried, by command id
    add_many = Journal.add_many

    def counted(journal: Journal, commands: list[tuple[Command, bytes]]) -> list[bool]:
        tries.update(command.id for command, _body in commands)
        return add_many(journal, commands)

    monkeypatch.setattr(Journal, "add_many", counted)
    caplog.set_level(logging.INFO, logger=gateway_module.log.name)
    site, bus, agent = site_setup["site"], site_setup["bus"], unique("agent")
    dead: list[Delivery] = []
    dead_tap = f"tme.test.dead.{site}"
    bus.declare_queue(dead_tap, DEAD_LETTER_EXCHANGE, site_routing_key(site))
    dead_consumer = bus.consume(dead_tap, dead.append)
    watcher = watcher_factory([cmd_topic(site, agent)])
    gw = site_setup["gateway"](resend_after_s=3600.0)  # sent once means once
    commands = [make_command(site, agent, "noop") for _ in range(COMMANDS)]
    ids = {command.id for command in commands}

    def sent() -> list[str]:
        return [m.id for m in watcher.messages if isinstance(m, Command)]

    try:
        with journal_locked(gw.config.state_dir / JOURNAL_FILE):
            for command in commands:
                site_setup["dispatch"](command)
            # Returned to the queue after each failed write, a command is dead-lettered
            # at its LIMIT + 1st return and never tried again.
            wait_until(
                lambda: max(tries.values(), default=0) > LIMIT + 1 or dead,
                what="a command tried past the delivery limit, or dead-lettered",
            )
        wait_until(lambda: ids <= set(sent()) or dead, what="every command sent")
        assert dead == []
        assert sorted(sent()) == sorted(ids)  # each once
        assert gw.journal is not None
        assert {gw.journal.get_state(i) for i in ids} == {"sent"}
    finally:
        dead_consumer.stop()
        bus.delete_queue(dead_tap)
    said = [
        (r.levelno, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.name == gateway_module.log.name and "journaling commands" in r.getMessage()
    ]
    assert said[0][0] == logging.ERROR and said[0][2], said  # once, with its traceback
    assert said[0][1].startswith("journaling commands failed; the journal cannot be written")
    assert said[-1][1].startswith("journaling commands recovered after ")
    assert len(said) == 2, said


def test_a_gateway_stopping_while_it_holds_commands_returns_them_to_the_queue(
    site_setup: dict, watcher_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop gives the held batch back (requeued) rather than wait for the journal; the
    next gateway takes the commands."""
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT_S", 0.05)
    site, agent = site_setup["site"], unique("agent")
    watcher = watcher_factory([cmd_topic(site, agent)])
    first = site_setup["gateway"](resend_after_s=3600.0)
    command = make_command(site, agent, "noop")
    with journal_locked(first.config.state_dir / JOURNAL_FILE):
        site_setup["dispatch"](command)
        wait_until(lambda: first.journal_failures.failing, what="the journal write failing")
        stopping = threading.Thread(target=first.stop)
        stopping.start()
        stopping.join(10)
        assert not stopping.is_alive(), "the gateway still waits for its journal"
    site_setup["gateway"](resend_after_s=3600.0)
    watcher.wait_for(lambda: any(m.id == command.id for m in watcher.messages))


@pytest.mark.parametrize("declare_topology", [True, False])
def test_a_gateway_holds_its_prefetch_of_commands_and_leaves_the_rest_ready(
    site_setup: dict, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch, declare_topology: bool
) -> None:
    """How many commands a gateway takes unacked is broker.prefetch (it took 200 whatever
    the setting said): held while its journal cannot be written, the others stay ready
    on the queue for another gateway of the site."""
    monkeypatch.setattr(journal_module, "BUSY_TIMEOUT_S", 0.05)
    prefetch = 3
    gw = site_setup["gateway"](
        bus_options={"prefetch": prefetch}, declare_topology=declare_topology
    )
    wait_until(lambda: gw.consuming, what="the gateway consuming its site queue")
    queue = site_queue(site_setup["site"])
    with journal_locked(gw.config.state_dir / JOURNAL_FILE):
        for _ in range(COMMANDS):
            site_setup["dispatch"](make_command(site_setup["site"], "skid-a", "noop"))
        wait_until(lambda: gw.journal_failures.failing, what="the journal write failing")
        wait_until(
            lambda: ready_messages(rabbitmq_url, queue) == COMMANDS - prefetch,
            what=f"{COMMANDS - prefetch} commands left ready",
        )
    wait_until(lambda: ready_messages(rabbitmq_url, queue) == 0, what="all taken")
