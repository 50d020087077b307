"""`tme mqtt acl` files on a real Mosquitto started for the test on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mosquitto_site import Peer, generated_broker
from typer.testing import CliRunner

from tme.cli.mqtt_cmd import app as mqtt_cli
from tme.protocol import cmd_topic, evt_topic, state_topic

pytestmark = pytest.mark.external_service


@pytest.fixture
def site_broker(tmp_path: Path) -> Iterator[tuple[int, str, dict[str, str]]]:
    """Mosquitto with the files `tme mqtt acl` wrote for agents a and b of a new site."""
    with generated_broker(tmp_path, "--agents", "a,b") as broker:
        yield broker.port, broker.site, broker.passwords


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


def test_generated_config_ties_client_id_to_username_on_every_listener(tmp_path: Path) -> None:
    out = tmp_path / "mqtt"
    args = ["acl", "--site", "s1", "--agents", "a", "--out", str(out)]
    for listeners in ([], ["--listener", "1884 127.0.0.1", "--listener", "8883"]):
        result = CliRunner().invoke(mqtt_cli, args + listeners)
        assert result.exit_code == 0, result.output
        lines = [x for x in (out / "mosquitto.conf").read_text().splitlines() if x[:1] != "#"]
        at = [i for i, line in enumerate(lines) if line.startswith("listener ")]
        assert [lines[i] for i in at] == [
            f"listener {x}" for x in (listeners[1::2] or ["1883 127.0.0.1"])
        ]
        # the option belongs to the listener before it; before the first one, Mosquitto
        # would open another listener on port 1883 of every interface for it
        assert all(lines[i + 1] == "use_username_as_clientid true" for i in at)
        assert sum(line.startswith("use_username_as_clientid") for line in lines) == len(at)


def test_each_gateway_has_its_own_account(tmp_path: Path) -> None:
    out = tmp_path / "mqtt"
    args = ["acl", "--site", "s1", "--agents", "a,b", "--out", str(out)]
    result = CliRunner().invoke(mqtt_cli, [*args, "--gateways", "gw1,gw2"])
    assert result.exit_code == 0, result.output
    users = [line.split(" ")[0] for line in (out / "credentials").read_text().splitlines()]
    assert users == ["a@s1", "b@s1", "gw1@s1", "gw2@s1"]
    acl = (out / "acl").read_text()
    assert "user gw2@s1\ntopic read tme/v1/s1/a/evt" in acl
    assert "topic write tme/v1/s1/gw2/state\n" in acl
    assert "user a@s1\ntopic read tme/v1/s1/a/cmd\ntopic read tme/v1/s1/gw1/state\n" in acl
    result = CliRunner().invoke(mqtt_cli, args)  # default: the gateway `tme gateway` names
    users = [line.split(" ")[0] for line in (out / "credentials").read_text().splitlines()]
    assert result.exit_code == 0 and users == ["a@s1", "b@s1", "gateway@s1"]


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (["--site", "plant.1", "--agents", "a"], "error: --site: 'plant.1' is not a name"),
        (["--site", "s1", "--agents", "a,skid.b"], "error: --agents: 'skid.b' is not a name"),
        (["--site", "s1", "--agents", "a", "--gateways", "-gw"], "error: --gateways: '-gw' is"),
    ],
)
def test_a_name_no_task_can_target_is_refused_as_the_gateway_and_agent_refuse_it(
    tmp_path: Path, options: list[str], line: str
) -> None:
    """It wrote accounts for a site or agent ("plant.1") that the API refuses in a task's
    target and no gateway or agent runs as: the same rule, said the same way."""
    out = tmp_path / "mqtt"
    result = CliRunner().invoke(mqtt_cli, ["acl", "--out", str(out), *options])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith(line), result.stderr
    assert "(1 to 64 letters, digits, - and _, starting with a letter or digit)" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "options",
    [
        ["--gateways", "a"],  # an agent's name: both would share one account and session
        ["--gateways", "gw/1"],
        ["--gateways", ","],
        ["--listener", "1883; include_dir /tmp"],
    ],
)
def test_clashing_or_malformed_names_are_refused(tmp_path: Path, options: list[str]) -> None:
    out = tmp_path / "mqtt"
    args = ["acl", "--site", "s1", "--agents", "a,b", "--out", str(out), *options]
    result = CliRunner().invoke(mqtt_cli, args)
    assert result.exit_code == 1 and "error:" in result.output, result.output
    assert not out.exists()


def test_generated_broker_keeps_more_than_1000_commands_for_an_offline_agent(
    tmp_path: Path,
) -> None:
    """Mosquitto's default queue of 1,000 messages a client silently dropped the commands
    past it for an agent that was away: the generated config raises it as tme.conf does."""
    with generated_broker(tmp_path, "--agents", "a") as broker:
        site, passwords = broker.site, broker.passwords
        agent_login = (f"a@{site}", passwords[f"a@{site}"])
        agent = Peer(broker.port, *agent_login, clean=False)
        gateway = Peer(broker.port, f"gateway@{site}", passwords[f"gateway@{site}"])
        try:
            assert agent.accepted() and gateway.accepted()
            agent.subscribe(cmd_topic(site, "a"))
            agent.close()  # away, its session kept
            sent = 1200
            for n in range(sent):
                gateway.publish(cmd_topic(site, "a"), b"%d" % n)
            agent = Peer(broker.port, *agent_login, clean=False)
            assert agent.accepted() and agent.session_present
            gateway.publish(cmd_topic(site, "a"), b"last")  # after all that were queued
            got = []
            while (payload := agent.next_message()[1]) != b"last":
                got.append(payload)
            assert got == [b"%d" % n for n in range(sent)]
        finally:
            agent.close()
            gateway.close()
