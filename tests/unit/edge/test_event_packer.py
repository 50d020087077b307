"""The agent's event packer: events go packed only while the gateway says it takes them."""

from __future__ import annotations

import asyncio

import pytest

from tme.agents import event_packer
from tme.agents.event_packer import EventPacker
from tme.agents.presence import presence_json
from tme.mqtt import MqttMessage
from tme.protocol import (
    EVENT_BATCHES,
    Event,
    EventBatch,
    ProtocolError,
    decode_agent_events,
    decode_any,
    pack_events,
    state_topic,
)

SITE, AGENT = "s1", "a1"


def gateway_state(
    state: str = "online", features: list[str] | None = None, name: str = "gateway"
) -> MqttMessage:
    payload = presence_json(SITE, name, "gateway", state, [], features)  # type: ignore[arg-type]
    return MqttMessage(state_topic(SITE, name), payload, 1, 1, True)


def event(type_: str, command_id: str = "c1", **fields: object) -> Event:
    return Event(command_id=command_id, type=type_, site=SITE, agent=AGENT, **fields)  # type: ignore[arg-type]


class Sent(list[bytes]):
    def types(self) -> list[list[str]]:
        """Each message sent, as the types of the events it carries."""
        out = []
        for body in self:
            message = decode_any(body)
            events = message.events if isinstance(message, EventBatch) else [message]
            out.append([e.type for e in events])  # type: ignore[union-attr]
        return out


@pytest.fixture
def packed() -> tuple[EventPacker, Sent]:
    sent = Sent()
    packer = EventPacker(SITE, sent.append)
    packer.on_gateway_state(gateway_state(features=[EVENT_BATCHES]))
    assert packer.packing
    return packer, sent


async def test_events_before_a_final_one_travel_with_it(packed) -> None:
    packer, sent = packed
    for type_ in ("accepted", "started"):
        packer.publish(event(type_))
    assert sent == []  # waiting for company
    packer.publish(event("succeeded"))
    assert sent.types() == [["accepted", "started", "succeeded"]]
    assert decode_any(sent[0]).site == SITE  # type: ignore[union-attr]


async def test_a_final_event_alone_goes_as_it_is(packed) -> None:
    packer, sent = packed
    final = event("succeeded")
    packer.publish(final)
    assert sent == [final.to_json()]


async def test_an_event_that_waits_goes_after_the_linger() -> None:
    went = asyncio.Event()
    sent = Sent()

    def send(body: bytes) -> None:
        sent.append(body)
        went.set()

    packer = EventPacker(SITE, send)
    packer.on_gateway_state(gateway_state(features=[EVENT_BATCHES]))
    packer.publish(event("accepted"))
    packer.publish(event("started"))
    assert sent == []
    await asyncio.wait_for(went.wait(), timeout=5)  # sent by the linger's timer
    assert sent.types() == [["accepted", "started"]]


async def test_packs_stay_within_their_limits(packed, monkeypatch) -> None:
    packer, sent = packed
    monkeypatch.setattr(event_packer, "PACK_MAX", 3)
    for i in range(7):
        packer.publish(event("accepted", f"c{i}"))
    assert sent.types() == [["accepted"] * 3] * 2
    packer.flush()
    long_line = "x" * (event_packer.PACK_MAX_BYTES // 3)
    for i in range(3):
        packer.publish(event("log", f"c{i}", line=long_line))
    packer.flush()
    assert [len(t) for t in sent.types()] == [3, 3, 1, 2, 1]
    assert all(len(body) <= event_packer.PACK_MAX_BYTES + 1024 for body in sent)


@pytest.mark.parametrize(
    "state",
    [
        gateway_state(features=[]),  # a gateway that does not take batches
        gateway_state("offline", [EVENT_BATCHES]),
        MqttMessage(state_topic(SITE, "gateway"), b"", 1, 1, True),  # cleared: no gateway
        MqttMessage(state_topic(SITE, "gateway"), b"{not json", 1, 1, True),
    ],
)
async def test_without_a_gateway_that_takes_batches_each_event_goes_alone(packed, state) -> None:
    packer, sent = packed
    packer.publish(event("accepted"))
    packer.publish(event("started"))
    packer.on_gateway_state(state)
    assert not packer.packing
    assert sent.types() == [["accepted"], ["started"]]  # what waited goes, one by one
    packer.publish(event("progress", progress=0.5))
    packer.publish(event("succeeded"))
    assert sent.types()[2:] == [["progress"], ["succeeded"]]


def test_a_new_packer_sends_one_event_per_message() -> None:
    sent = Sent()
    packer = EventPacker(SITE, sent.append)
    packer.publish(event("accepted"))
    packer.publish(event("started"))
    assert sent.types() == [["accepted"], ["started"]]


def test_the_gateway_reads_an_event_or_a_batch_with_each_events_bytes() -> None:
    single = event("accepted")
    assert decode_agent_events(single.to_json()) == [(single, single.to_json())]
    members = [event("accepted"), event("succeeded")]
    _, body = pack_events(SITE, [m.to_json() for m in members])
    assert decode_agent_events(body) == [(m, m.to_json()) for m in members]


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b"{garbage", "malformed Event"),
        (b'{"kind": "events", "events": []}', "missing required field `site`"),
        (b'{"kind": "events", "site": "s1", "events": [{"type": "x"}]}', "malformed Event"),
        (b'{"kind": "events", "v": 2, "site": "s1", "events": []}', "protocol version 2"),
        (
            pack_events(SITE, [event("accepted").to_json(), b'{"kind": "event"}'])[1],
            "malformed Event",
        ),
    ],
)
def test_the_gateway_refuses_a_broken_batch(payload: bytes, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_agent_events(payload)


def test_a_batch_holds_one_sites_events() -> None:
    stranger = Event(command_id="c", type="succeeded", site="s2", agent=AGENT)
    _, body = pack_events(SITE, [event("accepted").to_json(), stranger.to_json()])
    with pytest.raises(ProtocolError, match="holds events of"):
        decode_agent_events(body)


async def test_with_two_gateways_events_are_packed_only_while_every_one_online_takes_them() -> None:
    """Either gateway of the site may forward an agent's events: packed only while each
    one online takes batches."""
    packer = EventPacker(SITE, Sent().append)
    packer.on_gateway_state(gateway_state(features=[EVENT_BATCHES], name="gw1"))
    assert packer.packing
    packer.on_gateway_state(gateway_state(features=[], name="gw2"))  # an older gateway
    assert not packer.packing
    packer.on_gateway_state(gateway_state("offline", name="gw2"))
    assert packer.packing
    packer.on_gateway_state(gateway_state("offline", name="gw1"))
    assert not packer.packing  # none online
