"""How the gateway's bus publisher packs what one confirm round trip takes."""

from __future__ import annotations

import json

import pytest

from tme.agents import bus_publisher
from tme.agents.bus_publisher import Outgoing, pack
from tme.protocol import EVENTS_EXCHANGE, Event, batch_routing_key, decode_events


def _item(site: str, n: int, packable: bool = True) -> Outgoing:
    event = Event(command_id=f"cmd-{n}", type="started", site=site, agent="a")
    return Outgoing(
        EVENTS_EXCHANGE,
        f"{site}.a.started",
        event.to_json(),
        event.id,
        pack_site=site if packable else None,
    )


def test_an_event_alone_goes_as_it_came() -> None:
    item = _item("s", 1)
    (wire,) = pack([item])
    assert wire.message == (item.routing_key, item.body, item.message_id)
    assert wire.members == [0]


def test_neighbours_of_a_site_share_a_message_up_to_pack_max(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus_publisher, "PACK_MAX", 3)
    items = [_item("s", n) for n in range(4)] + [_item("s", 4, packable=False)]
    items += [_item("s", 5), _item("t", 6), _item("t", 7)]
    wire = pack(items)
    assert [w.members for w in wire] == [[0, 1, 2], [3], [4], [5], [6, 7]]
    assert [w.message[0] for w in wire] == [
        batch_routing_key("s"),
        "s.a.started",
        "s.a.started",
        "s.a.started",
        batch_routing_key("t"),
    ]
    carried = [m.id for w in wire for m in decode_events(w.message[1])]
    assert carried == [i.message_id for i in items]


def test_a_batch_forwards_each_event_byte_for_byte() -> None:
    """What a newer agent added to its event (unknown here) still reaches the controller."""
    extra = json.loads(_item("s", 1).body)
    extra["comment"] = "from a newer agent"
    items = [_item("s", 0), _item("s", 1)]
    items[1] = Outgoing(
        EVENTS_EXCHANGE, "s.a.started", json.dumps(extra).encode(), "x", pack_site="s"
    )
    (wire,) = pack(items)
    assert json.loads(wire.message[1])["events"][1] == extra


def test_a_batch_stays_under_pack_max_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    body = len(_item("s", 0).body)
    monkeypatch.setattr(bus_publisher, "PACK_MAX_BYTES", 2 * body + 1)
    wire = pack([_item("s", n) for n in range(5)])
    assert [w.members for w in wire] == [[0, 1], [2, 3], [4]]
