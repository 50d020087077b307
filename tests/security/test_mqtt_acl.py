"""`tme mqtt acl` files on a real Mosquitto started for the test on a free port."""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner
from waiting import wait_until

from tme.cli.mqtt_cmd import app as mqtt_cli
from tme.protocol import cmd_topic, evt_topic, state_topic

pytestmark = pytest.mark.external_service
TIMEOUT_S = 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Mosquitto with the files `tme mqtt acl` wrote for agents a and b of a new site."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        pytest.skip("mosquitto is not installed")
    site, out = f"s{uuid.uuid4().hex[:8]}", tmp_path / "mqtt"
    result = CliRunner().invoke(
        mqtt_cli, ["acl", "--site", site, "--agents", "a,b", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "passwd").stat().st_mode & 0o077 == 0  # secrets readable by the owner only
    passwords = dict(line.split(" ", 1) for line in (out / "credentials").read_text().splitlines())
    port = _free_port()
    conf = tmp_path / "broker.conf"
    as_root = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        (out / "mosquitto.conf").read_text()
        + f"listener {port} 127.0.0.1\npersistence false\n{as_root}"
    )
    broker = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: _listening(port) or broker.poll() is not None, what="mosquitto")
        if broker.poll() is not None:
            pytest.fail(
                f"mosquitto exited: {broker.stderr.read().decode() if broker.stderr else ''}"
            )
        yield port, site, passwords
    finally:
        broker.kill()
        broker.wait(timeout=10)
        if broker.stderr:
            broker.stderr.close()


class Peer:
    """A paho client that records what it receives and how its connect was answered."""

    def __init__(self, port: int, username: str | None, password: str | None) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[bool] = queue.Queue()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex}")
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(not rc.is_failure)
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, m.payload))
        self.subscribed: queue.Queue[object] = queue.Queue()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.put(rcs)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def accepted(self) -> bool:
        return self.connack.get(timeout=TIMEOUT_S)

    def subscribe(self, *topics: str) -> None:
        for topic in topics:
            self.client.subscribe(topic, qos=1)
            self.subscribed.get(timeout=TIMEOUT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(timeout=TIMEOUT_S)

    def next_message(self) -> tuple[str, bytes]:
        return self.received.get(timeout=TIMEOUT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_agents_reach_only_their_own_topics(site_broker) -> None:  # type: ignore[no-untyped-def]
    port, site, passwords = site_broker
    peers = {
        name: Peer(port, f"{name}@{site}", passwords[f"{name}@{site}"])
        for name in ("a", "b", "gateway")
    }
    try:
        assert all(p.accepted() for p in peers.values())
        gateway, a, b = peers["gateway"], peers["a"], peers["b"]
        gateway.subscribe(f"tme/v1/{site}/+/evt", f"tme/v1/{site}/+/state")
        b.subscribe(cmd_topic(site, "b"))
        a.subscribe(cmd_topic(site, "b"))  # refused by the ACL: a never gets b's commands
        a.subscribe(cmd_topic(site, "a"), state_topic(site, "gateway"))
        # a forges b's events and state, then sends its own; ordered on one connection,
        # so when the gateway has a's own event, the forged ones would have come first
        a.publish(evt_topic(site, "b"), b"forged event")
        a.publish(state_topic(site, "b"), b"offline")
        a.publish(evt_topic(site, "a"), b"own event")
        assert gateway.next_message() == (evt_topic(site, "a"), b"own event")
        # a forges a command to b; b only ever sees the gateway's command
        a.publish(cmd_topic(site, "b"), b"forged command")
        gateway.publish(cmd_topic(site, "b"), b"real command")
        assert b.next_message() == (cmd_topic(site, "b"), b"real command")
        gateway.publish(cmd_topic(site, "a"), b"for a")
        assert a.next_message() == (cmd_topic(site, "a"), b"for a")  # not b's command
        # agents read the gateway's state (whether it takes packed events), not each other's
        gateway.publish(state_topic(site, "gateway"), b"gateway online")
        assert a.next_message() == (state_topic(site, "gateway"), b"gateway online")
        for peer in peers.values():
            assert peer.received.empty()
    finally:
        for peer in peers.values():
            peer.close()


def test_anonymous_and_wrong_password_cannot_connect(site_broker) -> None:  # type: ignore[no-untyped-def]
    port, site, _passwords = site_broker
    for username, password in ((None, None), (f"a@{site}", "wrong"), ("intruder", "x")):
        peer = Peer(port, username, password)
        try:
            assert peer.accepted() is False, username
        finally:
            peer.close()


def test_password_lines_without_mosquitto_passwd_are_read_by_mosquitto() -> None:
    from tme.mqtt_acl import pbkdf2_line

    line = pbkdf2_line("u", "p", salt=b"0123456789ab")
    user, _, rest = line.partition(":")
    assert user == "u" and rest.startswith("$7$101$") and len(rest.split("$")) == 5
