"""One account's password cannot take over another client's MQTT session.

TME's client ids are easy to guess (`tme-agent-<site>-<agent>`, `tme-gw-<site>-<name>`).
Were the broker to honour any client id, agent a's credentials could connect as b or
as the gateway: disconnect it, or start a clean session under its id and so wipe the
commands queued for b, or an event b already had acknowledged by the broker. Both the
mosquitto.conf `tme mqtt acl` writes and the shipped tme.conf take the username as
client id instead; each is run on a real Mosquitto here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto_site import Peer, SiteBroker, generated_broker, shipped_broker

from tme.protocol import cmd_topic, evt_topic

pytestmark = pytest.mark.external_service

CONFIGS = {"generated": generated_broker, "shipped": shipped_broker}


@pytest.fixture(params=sorted(CONFIGS))
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SiteBroker]:
    with CONFIGS[request.param](tmp_path, "--agents", "a,b") as made:
        yield made


class Victim:
    """A client a's password is aimed at: its account, the client id TME gives it, a topic
    it reads and the account that writes there."""

    def __init__(self, broker: SiteBroker, name: str) -> None:
        site = broker.site
        if name == "gateway":  # agents/gateway.py: the gateway reads the agents' events
            self.client_id, self.topic, sender = f"tme-gw-{site}-gateway", evt_topic(site, "b"), "b"
        else:  # agents/agent.py: an agent reads its commands
            self.client_id, self.topic, sender = (
                f"tme-agent-{site}-b",
                cmd_topic(site, "b"),
                "gateway",
            )
        self.broker, self.username, self.sender = broker, f"{name}@{site}", f"{sender}@{site}"

    def connect(self, username: str | None = None, clean: bool = False) -> Peer:
        """A connection with the victim's client id, on its account unless told another."""
        username = username or self.username
        peer = Peer(
            self.broker.port, username, self.broker.passwords[username], self.client_id, clean
        )
        assert peer.accepted(), username
        return peer

    def send(self, payload: bytes) -> None:
        sender = Peer(self.broker.port, self.sender, self.broker.passwords[self.sender])
        try:
            assert sender.accepted()
            sender.publish(self.topic, payload)  # PUBACKed: the sender is done with it
        finally:
            sender.close()


@pytest.mark.parametrize("name", ["b", "gateway"])
def test_another_account_cannot_wipe_a_session(broker: SiteBroker, name: str) -> None:
    victim = Victim(broker, name)
    session = victim.connect()
    session.subscribe(victim.topic)
    session.close()  # offline; the broker keeps its session and queues for it
    victim.send(b"queued while offline")
    # a's password with the victim's client id and a clean session
    victim.connect(username=f"a@{broker.site}", clean=True).close()
    back = victim.connect()
    try:
        assert back.session_present
        assert back.next_message() == (victim.topic, b"queued while offline")
    finally:
        back.close()


@pytest.mark.parametrize("name", ["b", "gateway"])
def test_another_account_cannot_disconnect_a_client(broker: SiteBroker, name: str) -> None:
    victim = Victim(broker, name)
    online = victim.connect()
    intruder = None
    try:
        online.subscribe(victim.topic)
        intruder = victim.connect(username=f"a@{broker.site}")
        victim.send(b"after a connected")
        # delivered on the first connection: a broker that had closed it for a would
        # have done so before a's CONNACK, so the close would be recorded by now
        assert online.next_message() == (victim.topic, b"after a connected")
        assert online.disconnected.empty()
    finally:
        for peer in (intruder, online):
            if peer is not None:
                peer.close()
