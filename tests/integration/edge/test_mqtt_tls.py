"""MQTT over TLS (mqtts://) against a real Mosquitto with a TLS listener and a CA of the
test's own: the broker's certificate is checked (a client that does not trust its CA
never connects), a broker that asks for client certificates takes the agent's, and a
command goes from RabbitMQ through a gateway and an agent both on TLS and back."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from commands import make_command
from ports import free_port, listening
from waiting import wait_until

from tme.errors import ConfigError
from tme.mqtt import MqttLink, TlsFiles

pytestmark = pytest.mark.external_service


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    """`name`.key and `name`.crt, signed by the folder's ca.key."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", subject, cwd=folder)  # fmt: skip
    (folder / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.crt", "-days", "2",
             "-extfile", f"{name}.ext", cwd=folder)  # fmt: skip


@dataclass
class TlsBroker:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"mqtts://127.0.0.1:{self.port}"

    def files(self, client: bool = False) -> TlsFiles:
        ca = str(self.folder / "ca.crt")
        if not client:
            return TlsFiles(ca)
        return TlsFiles(ca, str(self.folder / "agent.crt"), str(self.folder / "agent.key"))


def _broker(folder: Path, require_certificate: bool) -> Iterator[TlsBroker]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not shutil.which("openssl") or not os.path.exists(binary):
        pytest.skip("openssl and mosquitto are needed")
    folder.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.crt", "-days", "2", "-subj", "/CN=TME test CA", cwd=folder)  # fmt: skip
    _signed(folder, "server", "/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed(folder, "agent", "/CN=agent", "extendedKeyUsage=clientAuth\n")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"cafile {folder}/ca.crt\ncertfile {folder}/server.crt\nkeyfile {folder}/server.key\n"
        f"require_certificate {'true' if require_certificate else 'false'}\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    log = (folder / "mosquitto.log").open("ab")
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log, stderr=log)
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, timeout=10)
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited with {process.returncode}; see {log.name}")
        yield TlsBroker(folder, port)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    yield from _broker(tmp_path / "tls", require_certificate=False)


@pytest.fixture
def mutual_tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    yield from _broker(tmp_path / "mtls", require_certificate=True)


def _link(broker: TlsBroker, tls: TlsFiles | None, name: str = "tls") -> MqttLink:
    return MqttLink(broker.url, f"tme-test-{name}-{broker.port}", tls=tls)


def test_a_link_that_trusts_the_brokers_ca_connects_over_tls(tls_broker: TlsBroker) -> None:
    link = _link(tls_broker, tls_broker.files())
    got: list[bytes] = []
    link.subscribe("tme/v1/tls/probe", lambda m: got.append(m.payload))
    link.start()
    try:
        assert link.wait_connected(15)
        assert link.endpoint.tls and link.endpoint.port == tls_broker.port
        assert link.publish_wait("tme/v1/tls/probe", b"over tls", 10)
        wait_until(lambda: got == [b"over tls"], what="the message back over TLS")
    finally:
        link.stop()


def test_a_link_that_does_not_trust_the_brokers_certificate_never_connects(
    tls_broker: TlsBroker,
) -> None:
    link = _link(tls_broker, None, "untrusting")  # the system's CAs: not the test's
    link.start()
    try:
        wait_until(lambda: link._connect_failures.failing, timeout=15, what="refused")
        assert not link.is_connected()
    finally:
        link.stop()


def test_a_broker_that_asks_for_a_certificate_takes_the_agents(
    mutual_tls_broker: TlsBroker,
) -> None:
    with_cert = _link(mutual_tls_broker, mutual_tls_broker.files(client=True), "mine")
    without = _link(mutual_tls_broker, mutual_tls_broker.files(), "none")
    for link in (with_cert, without):
        link.start()
    try:
        assert with_cert.wait_connected(15)
        log = mutual_tls_broker.folder / "mosquitto.log"
        wait_until(  # the broker's own record of the refusal
            lambda: "peer did not return a certificate" in log.read_text(errors="replace"),
            timeout=15,
            what="the broker refusing the link without a certificate",
        )
        assert not without.is_connected()
    finally:
        for link in (with_cert, without):
            link.stop()


def test_tls_files_with_a_plain_url_or_a_file_that_is_none_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="for an mqtts:// URL"):
        MqttLink("mqtt://127.0.0.1:1883", "c1", tls=TlsFiles(ca_file="ca.crt"))
    (tmp_path / "ca.crt").write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"mqtt TLS: cannot use .*ca.crt"):
        MqttLink("mqtts://127.0.0.1", "c1", tls=TlsFiles(ca_file=str(tmp_path / "ca.crt")))


def test_a_command_goes_through_a_gateway_and_an_agent_both_on_tls(
    mutual_tls_broker: TlsBroker, site_setup, tmp_path: Path
) -> None:
    """The agent's config names its certificate files relative to itself."""
    import yaml

    from tme.agents.agent import DeviceAgent
    from tme.agents.agent_config import load_agent_config
    from tme.agents.runner import AgentThread

    site, tap = site_setup["site"], site_setup["tap"]
    site_setup["gateway"](
        mqtt_url=mutual_tls_broker.url, mqtt_tls=mutual_tls_broker.files(client=True)
    )
    certs = os.path.relpath(mutual_tls_broker.folder, tmp_path)
    config = tmp_path / "agent.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "site": site,
                "agent": "tls-agent",
                "mqtt": {
                    "url": mutual_tls_broker.url,
                    "ca_file": f"{certs}/ca.crt",
                    "cert_file": f"{certs}/agent.crt",
                    "key_file": f"{certs}/agent.key",
                },
                "state_dir": "agent-state",
            }
        )
    )
    runner = AgentThread(DeviceAgent(load_agent_config(config))).start()
    try:
        assert runner.agent.link.wait_connected(15)
        command = make_command(site, "tls-agent", "noop")
        site_setup["dispatch"](command)
        final = tap.wait_type(command.id, "succeeded")
        assert final[-1].type == "succeeded"
    finally:
        runner.stop()
