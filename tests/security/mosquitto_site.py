"""A real Mosquitto on a free port with the files `tme mqtt acl` writes, and a paho client
that records how the broker answers it (for the MQTT access tests)."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from ports import free_port, listening
from typer.testing import CliRunner
from waiting import wait_until

from tme.cli.mqtt_cmd import app as mqtt_cli

TIMEOUT_S = 10
SHIPPED_CONF = Path(__file__).resolve().parents[2] / "configs" / "mosquitto" / "tme.conf"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@dataclass(frozen=True)
class SiteBroker:
    port: int
    site: str
    passwords: dict[str, str]  # username -> password, from the credentials file

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"


def site_files(out: Path, site: str, *options: str) -> dict[str, str]:
    """Run `tme mqtt acl` into `out`; the passwords it wrote, by username."""
    result = CliRunner().invoke(mqtt_cli, ["acl", "--site", site, "--out", str(out), *options])
    assert result.exit_code == 0, result.output
    assert (out / "passwd").stat().st_mode & 0o077 == 0  # secrets readable by the owner only
    lines = (out / "credentials").read_text().splitlines()
    return dict(line.split(" ", 1) for line in lines)


def _for_test(conf: str) -> str:
    # Mosquitto started as root drops to user `mosquitto`, who cannot read the 600 files.
    return conf + "persistence false\n" + ("user root\n" if os.geteuid() == 0 else "")


@contextmanager
def running_mosquitto(conf: Path, port: int) -> Iterator[None]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(binary):
        if IN_CI:
            pytest.fail("mosquitto is not installed (CI=true: external services are required)")
        pytest.skip("mosquitto is not installed")
    broker = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_until(lambda: listening(port) or broker.poll() is not None, what="mosquitto")
        if broker.poll() is not None:
            pytest.fail(
                f"mosquitto exited: {broker.stderr.read().decode() if broker.stderr else ''}"
            )
        yield
    finally:
        broker.kill()
        broker.wait(timeout=10)
        if broker.stderr:
            broker.stderr.close()


@contextmanager
def generated_broker(tmp_path: Path, *options: str) -> Iterator[SiteBroker]:
    """Mosquitto run with the mosquitto.conf `tme mqtt acl` generated for a new site."""
    site, out, port = f"s{uuid.uuid4().hex[:8]}", tmp_path / "mqtt", free_port()
    passwords = site_files(out, site, "--listener", f"{port} 127.0.0.1", *options)
    conf = tmp_path / "broker.conf"
    conf.write_text(_for_test((out / "mosquitto.conf").read_text()))
    with running_mosquitto(conf, port):
        yield SiteBroker(port, site, passwords)


@contextmanager
def shipped_broker(tmp_path: Path, *options: str) -> Iterator[SiteBroker]:
    """Mosquitto run with configs/mosquitto/tme.conf on the files `tme mqtt acl` wrote,
    moved to a free port and without its persistence folder."""
    site, out, port = f"s{uuid.uuid4().hex[:8]}", tmp_path / "mqtt", free_port()
    passwords = site_files(out, site, *options)
    conf = SHIPPED_CONF.read_text()
    for shipped, here in (
        ("listener 1883 127.0.0.1", f"listener {port} 127.0.0.1"),
        ("/etc/mosquitto/tme.passwd", str(out / "passwd")),
        ("/etc/mosquitto/tme.acl", str(out / "acl")),
        ("persistence true", "persistence false"),
    ):
        assert shipped in conf, f"{SHIPPED_CONF} no longer has {shipped!r}"
        conf = conf.replace(shipped, here)
    path = tmp_path / "broker.conf"
    path.write_text(_for_test(conf))
    with running_mosquitto(path, port):
        yield SiteBroker(port, site, passwords)


class Peer:
    """A paho client that records what it receives and how the broker answered and ended
    its connection. `clean=False` keeps its session (as TME's agents and gateways do)."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        client_id: str | None = None,
        clean: bool = True,
    ) -> None:
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[tuple[bool, bool]] = queue.Queue()
        self.disconnected: queue.Queue[str] = queue.Queue()
        self.subscribed: queue.Queue[object] = queue.Queue()
        self.session_present = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex}",
            clean_session=clean,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = lambda c, u, f, rc, p: self.connack.put(
            (not rc.is_failure, bool(f.session_present))
        )
        self.client.on_disconnect = lambda c, u, f, rc, p: self.disconnected.put(str(rc))
        self.client.on_message = lambda c, u, m: self.received.put((m.topic, m.payload))
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.put(rcs)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def accepted(self) -> bool:
        accepted, self.session_present = self.connack.get(timeout=TIMEOUT_S)
        return accepted

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
