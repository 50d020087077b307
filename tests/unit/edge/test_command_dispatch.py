"""The gateway's dispatcher against a real journal: what it sends, when, and what it
reports for entries it can no longer send or that nobody answers.

Each test runs dispatch passes itself (the dispatcher's thread is not started), and
the bus publisher confirms at once, so every pass is deterministic.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from commands import make_command

from tme.agents import command_dispatch
from tme.agents.bus_publisher import Outgoing
from tme.agents.command_dispatch import CommandDispatcher
from tme.agents.journal import Journal
from tme.mqtt import MqttLink
from tme.protocol import Command, Event, cmd_topic, utcnow

SITE = "s1"


def _command(agent: str = "a1", **fields: object) -> Command:
    return make_command(SITE, agent, **{"timeout_s": 5, **fields})


class ConfirmingPublisher:
    """Confirms every submitted message at once; keeps the events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def submit(self, item: Outgoing) -> None:
        self.events.append(Event.from_json(item.body))
        if item.after is not None:
            item.after()


class Sent(list[tuple[str, bytes]]):
    def __call__(self, topic: str, payload: bytes) -> None:
        self.append((topic, payload))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    journal = Journal(tmp_path / "j.sqlite3")
    yield journal
    journal.close()


def _dispatcher(
    journal: Journal, send: object, **kw: object
) -> tuple[CommandDispatcher, ConfirmingPublisher]:
    publisher = ConfirmingPublisher()
    dispatcher = CommandDispatcher(SITE, journal, publisher, send, **kw)  # type: ignore[arg-type]
    return dispatcher, publisher


def test_one_failing_send_holds_up_no_other_and_is_logged_once(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    """paho refuses a wildcard in a topic with ValueError; the entries around it still go
    out and are marked sent, so they are not re-sent at every pass."""
    before, bad, after = _command(), _command("bad+agent"), _command()
    for cmd in (before, bad, after):
        journal.add(cmd, cmd.to_json())
    sent = Sent()

    def send(topic: str, payload: bytes) -> None:
        if "+" in topic:
            raise ValueError("Publish topic cannot contain wildcards.")
        sent(topic, payload)

    dispatcher, _ = _dispatcher(journal, send, resend_after_s=0.0)
    with caplog.at_level(logging.ERROR, logger=command_dispatch.__name__):
        dispatcher.dispatch_open_entries()
        assert [p for _t, p in sent] == [before.to_json(), after.to_json()]
        assert journal.get_state(before.id) == journal.get_state(after.id) == "sent"
        dispatcher.dispatch_open_entries()  # due again at once (resend_after_s=0)
    failures = [r for r in caplog.records if bad.id in r.getMessage()]
    assert len(failures) == 1


def test_an_entry_is_marked_sent_before_it_goes_out(journal: Journal) -> None:
    """A crash right after a send must not leave the entry pending: past not_after the
    gateway would report it expired and never started, though the agent may run it."""
    cmd = _command()
    journal.add(cmd, cmd.to_json())
    states_at_send: list[str | None] = []
    dispatcher, _ = _dispatcher(
        journal, lambda _t, _p: states_at_send.append(journal.get_state(cmd.id))
    )
    dispatcher.dispatch_open_entries()
    assert states_at_send == ["sent"]


def test_nothing_is_sent_while_mqtt_is_down_and_all_goes_on_reconnect(journal: Journal) -> None:
    """paho keeps a QoS 1 publish in memory while disconnected: a dispatcher re-offering
    sent entries during an outage would grow it without bound."""
    pending, earlier = _command(), _command()
    for cmd in (pending, earlier):
        journal.add(cmd, cmd.to_json())
    journal.mark_sent(earlier.id)
    up = [False]
    sent = Sent()
    dispatcher, publisher = _dispatcher(journal, sent, resend_after_s=0.0, connected=lambda: up[0])
    for _ in range(3):
        dispatcher.dispatch_open_entries()
    assert sent == []
    assert journal.get_state(pending.id) == "pending"  # not sent, so it may still expire as such
    assert {e.command_id for e in publisher.events if e.type == "delivered"} == {
        pending.id,
        earlier.id,
    }  # the bus side goes on
    up[0] = True
    dispatcher.resend_all()  # what the link's on_connected hook does
    dispatcher.dispatch_open_entries()
    assert sorted(p for _t, p in sent) == sorted([pending.to_json(), earlier.to_json()])


def test_a_link_that_never_connected_queues_no_command_in_memory(journal: Journal) -> None:
    """The same with paho itself: a link to a broker that is not there."""
    link = MqttLink("mqtt://127.0.0.1:9", "tme-test-never-connected")  # nothing listens on 9
    assert not link.is_connected()
    cmd = _command()
    journal.add(cmd, cmd.to_json())
    dispatcher, _ = _dispatcher(
        journal, link.publish, resend_after_s=0.0, connected=link.is_connected
    )
    for _ in range(3):
        dispatcher.dispatch_open_entries()
    assert len(link._client._out_messages) == 0


def test_a_sent_command_nobody_answers_is_given_up_with_an_unknown_outcome(
    journal: Journal,
) -> None:
    """An agent that never announces presence is not held as offline: its commands are
    offered every resend_after_s. Long after one could have run, the entry is closed
    and reported timed_out, never as not started (it was sent, so it may have run)."""
    margin = command_dispatch.GIVE_UP_MARGIN_S
    long_ago = utcnow() - timedelta(seconds=margin + 60)
    stale = _command("silent", not_after=long_ago, timeout_s=30)
    running_long = _command("silent", not_after=long_ago, timeout_s=3600)  # may still run
    fresh = _command("silent")
    for cmd in (stale, running_long, fresh):
        journal.add(cmd, cmd.to_json())
    journal.mark_sent_many([stale.id, running_long.id, fresh.id])
    sent = Sent()
    dispatcher, publisher = _dispatcher(journal, sent, resend_after_s=0.0)
    dispatcher.dispatch_open_entries()
    (gave_up,) = [e for e in publisher.events if e.type not in ("delivered",)]
    assert gave_up.command_id == stale.id and gave_up.type == "timed_out"
    assert not gave_up.not_started and gave_up.source == "gateway"
    assert "outcome unknown" in gave_up.reason
    assert journal.get_state(stale.id) == "unanswered"
    assert journal.get_state(running_long.id) == journal.get_state(fresh.id) == "sent"
    assert {p for _t, p in sent} == {running_long.to_json(), fresh.to_json()}
    assert all(t == cmd_topic(SITE, "silent") for t, _p in sent)


def test_the_journal_deletes_given_up_entries_with_the_closed_ones(journal: Journal) -> None:
    cmd = _command()
    journal.add(cmd, cmd.to_json())
    journal.close_entry(cmd.id, "unanswered")
    journal.prune(now=time.time() + 2 * journal.keep_s + cmd.not_after.timestamp())
    assert journal.get_state(cmd.id) is None


def test_a_failing_journal_is_logged_once_then_its_recovery(
    journal: Journal, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every pass (once a second) fails while the journal cannot be read: one traceback,
    not one a second, then one line when passes work again."""
    dispatcher, _ = _dispatcher(journal, Sent())
    dispatcher.run_pass()
    caplog.set_level(logging.INFO, logger=command_dispatch.__name__)
    journal.close()  # as a journal on a failed disk: every read raises
    for _ in range(20):
        dispatcher.run_pass()
    lines = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [(logging.ERROR, "dispatch pass failed", True)]
    dispatcher.journal = reopened = Journal(tmp_path / "j.sqlite3")
    try:
        dispatcher.run_pass()
    finally:
        reopened.close()
    assert (
        caplog.records[-1]
        .getMessage()
        .startswith("dispatch pass recovered after 20 failed passes over ")
    )


@pytest.mark.parametrize(
    ("mqtt_up", "why"),
    [
        (True, "the agent was offline"),
        (False, "the gateway's MQTT link was down"),
    ],
)
def test_an_expired_command_says_why_it_was_not_sent(
    journal: Journal, mqtt_up: bool, why: str
) -> None:
    """A command held past its not_after while the gateway could not reach its MQTT
    broker was reported "the agent was offline", sending the operator to the agent."""
    held = _command(not_after=utcnow() - timedelta(seconds=1))
    journal.add(held, held.to_json())
    dispatcher, publisher = _dispatcher(journal, Sent(), connected=lambda: mqtt_up)
    if mqtt_up:
        dispatcher.agent_presence("a1", online=False)
    dispatcher.dispatch_open_entries()
    (expired,) = [e for e in publisher.events if e.type == "expired"]
    assert expired.reason == f"not delivered before not_after: {why}"
    assert expired.not_started


def test_commands_held_for_an_offline_agent_go_priority_first_when_it_returns(
    journal: Journal,
) -> None:
    """Higher priority first, then in the order they came: the priority 9 command that
    came last goes before the priority 1 backlog the agent missed."""
    sent = Sent()
    dispatcher, _ = _dispatcher(journal, sent)
    dispatcher.agent_presence("a1", online=False)
    meters = [_command(priority=1) for _ in range(2)]
    level, inlet, more = _command(priority=5), _command(priority=9), _command(priority=1)
    for cmd in (*meters, level, inlet, more):
        journal.add(cmd, cmd.to_json())
        dispatcher.dispatch_open_entries()
    assert sent == []  # held while the agent is away
    dispatcher.agent_presence("a1", online=True)
    dispatcher.dispatch_open_entries()
    assert [Command.from_json(p).id for _t, p in sent] == [
        inlet.id,
        level.id,
        meters[0].id,
        meters[1].id,
        more.id,
    ]


def test_a_journal_written_before_priorities_opens_with_its_entries_at_the_default(
    tmp_path: Path,
) -> None:
    """A gateway upgraded on its journal: the entries it held are sent, at priority 5,
    between the new commands of higher and lower priority."""
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE journal (id TEXT PRIMARY KEY, agent TEXT NOT NULL, body BLOB NOT NULL,"
        " not_after REAL NOT NULL, state TEXT NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,"
        " sent_at REAL, updated REAL NOT NULL)"
    )
    held = _command()
    old.execute(
        "INSERT INTO journal (id, agent, body, not_after, state, updated)"
        " VALUES (?, 'a1', ?, ?, 'pending', 0)",
        (held.id, held.to_json(), held.not_after.timestamp()),
    )
    old.commit()
    old.close()
    journal = Journal(path)
    try:
        low, high = _command(priority=1), _command(priority=9)
        for cmd in (low, high):
            journal.add(cmd, cmd.to_json())
        assert [e.id for e in journal.open_entries()] == [high.id, held.id, low.id]
    finally:
        journal.close()
