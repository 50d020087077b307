"""What a broken or hostile agent can send: refused on its own, acked, and never taken
for another agent's answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tme.agents.event_forwarder import EventForwarder
from tme.agents.journal import Journal
from tme.mqtt import MqttMessage
from tme.protocol import (
    MAX_LOG_BYTES,
    Command,
    Event,
    ProtocolError,
    decode_agent_events,
    decode_events,
    utcnow,
)

DEEP = "[" * 5000 + "]" * 5000


def _event(**fields: Any) -> dict[str, Any]:
    return {"command_id": "c1", "type": "succeeded", "site": "s1", "agent": "a1", **fields}


@pytest.mark.parametrize(
    "payload",
    [
        DEEP.encode(),
        json.dumps({"kind": "event", "x": 1})[:-1].encode() + b', "y": ' + DEEP.encode() + b"}",
        json.dumps({"kind": "events", "site": "s1", "events": []})[:-1].encode()
        + b', "z": '
        + DEEP.encode()
        + b"}",
    ],
    ids=["bare", "event", "batch"],
)
def test_a_message_nested_too_deep_is_a_protocol_error(payload: bytes) -> None:
    """msgspec raises RecursionError there, which escaped every handler: the gateway
    left the message unacked, and a few such stopped the site's events."""
    for decode in (decode_agent_events, decode_events):
        with pytest.raises(ProtocolError):
            decode(payload)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"id": "x" * 37}, "length <= 36"),
        ({"command_id": "c" * 37}, "length <= 36"),
        ({"site": ""}, "length >= 1"),
        ({"agent": "a" * 65}, "length <= 64"),
        ({"line": "x" * (MAX_LOG_BYTES + 1)}, "length <= 262144"),
        ({"result": {"n": json.loads("[" * 40 + "]" * 40)}}, "nested deeper than 32"),
    ],
    ids=["id", "command_id", "site", "agent", "line", "result"],
)
def test_an_event_beyond_the_protocols_bounds_is_refused(fields: dict[str, Any], why: str) -> None:
    """What the database cannot store would fail the write of the whole batch it came
    in, every other agent's events with it: refused on decode instead, on its own."""
    with pytest.raises(ProtocolError, match=why):
        Event.from_json(json.dumps(_event(**fields)).encode())


class Acks:
    def __init__(self) -> None:
        self.acked: list[int] = []

    def __call__(self, message: MqttMessage) -> None:
        self.acked.append(message.mid)


def test_a_message_the_gateway_cannot_handle_is_dropped_and_acked(tmp_path: Path) -> None:
    """Unacked, it would hold one of the few messages the broker lets be in flight to
    the gateway; a handful would stop every agent's events of the site."""

    class Broken:
        def submit(self, _item: object) -> None:
            raise RuntimeError("the publisher broke")

    acks = Acks()
    journal = Journal(tmp_path / "j.sqlite3")
    forwarder = EventForwarder("s1", journal, Broken(), None, acks)  # type: ignore[arg-type]
    body = Event(command_id="c1", type="accepted", site="s1", agent="a1").to_json()
    forwarder.on_event(MqttMessage("tme/v1/s1/a1/evt", body, 1, 7, False))
    forwarder.on_presence(MqttMessage("tme/v1/s1/a1/state", b"{not json", 1, 8, False))
    assert acks.acked == [7, 8]
    journal.close()


def test_another_agents_answer_closes_no_journal_entry(tmp_path: Path) -> None:
    """Agent a answering for b's command must not stop the gateway offering it to b."""
    journal = Journal(tmp_path / "j.sqlite3")
    command = Command(site="s1", agent="b", op="noop", timeout_s=5, not_after=utcnow(), task_id=1)
    journal.add(command, command.to_json())
    journal.close_entry(command.id, "done", agent="a")
    assert journal.get_state(command.id) == "pending"
    journal.close_entry(command.id, "done", agent="b")
    assert journal.get_state(command.id) == "done"
    journal.close()
