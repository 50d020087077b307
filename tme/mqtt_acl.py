"""Mosquitto credentials and ACLs for one site: each agent and each gateway log in as
themselves and reach only their own topics.

    agent A    reads  tme/v1/<site>/A/cmd        writes tme/v1/<site>/A/evt, .../A/state
               and the gateways' state (whether a gateway takes packed events, reaches RabbitMQ)
    gateway G  reads  tme/v1/<site>/<each agent>/evt and /state
               writes tme/v1/<site>/<each agent>/cmd and its own state

Anonymous clients are refused by the generated configuration, and on every listener
it defines the client id is the username (`use_username_as_clientid`): an account
only ever has its own session, so one agent's password cannot disconnect another
client or take over, resume or wipe its session (client ids like `tme-agent-<site>-B`
are easy to guess). Hence one account per gateway name, since two gateways sharing
an account would share, and keep taking, one session.

Password lines use `mosquitto_passwd` when installed, else Mosquitto 2's
PBKDF2-SHA512 format ($7$).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tme.errors import ConfigError
from tme.protocol import cmd_topic, evt_topic, state_topic
from tme.topics import name_problem

PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.x writes by default
SALT_BYTES = 12
DEFAULT_GATEWAY = "gateway"  # the name `tme gateway` runs under without --name
DEFAULT_LISTENER = "1883 127.0.0.1"  # as configs/mosquitto/tme.conf: loopback only
# Names become topic levels and usernames: no MQTT wildcards, separators or `@`. They are
# checked as the API checks a task's target, the gateway its --site and --name, and the
# agent its config (tme.topics.name_problem): a looser rule here wrote accounts for a
# site or agent ("plant.1") that no task can target and no agent or gateway runs as.
LISTENER_RULE = re.compile(r"^\d{1,5}( \S+)?$")  # "PORT [ADDRESS]", as Mosquitto reads it


@dataclass(frozen=True)
class MqttAccount:
    username: str
    password: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]


def agent_username(site: str, agent: str) -> str:
    return f"{agent}@{site}"


def site_accounts(
    site: str, agents: Sequence[str], gateways: Sequence[str] = (DEFAULT_GATEWAY,)
) -> list[MqttAccount]:
    """One account per agent and one per gateway of the site, with fresh random passwords."""
    agent_names, gateway_names = _checked_names(site, agents, gateways)
    gateway_states = tuple(state_topic(site, g) for g in gateway_names)
    accounts = [
        MqttAccount(
            agent_username(site, agent),
            secrets.token_urlsafe(18),
            reads=(cmd_topic(site, agent), *gateway_states),
            writes=(evt_topic(site, agent), state_topic(site, agent)),
        )
        for agent in agent_names
    ]
    reads = tuple(t for a in agent_names for t in (evt_topic(site, a), state_topic(site, a)))
    commands = tuple(cmd_topic(site, a) for a in agent_names)
    accounts += [
        MqttAccount(
            agent_username(site, gateway),
            secrets.token_urlsafe(18),
            reads,
            (*commands, state_topic(site, gateway)),
        )
        for gateway in gateway_names
    ]
    return accounts


def _checked_names(
    site: str, agents: Sequence[str], gateways: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Sorted, distinct agent and gateway names, refused when they are no topic level or
    when a gateway bears an agent's name (both would be one account, with one session)."""
    agent_names, gateway_names = sorted(set(agents)), sorted(set(gateways))
    if not gateway_names:
        raise ConfigError("a site needs at least one gateway account", key="gateways")
    for key, names in (("site", [site]), ("agents", agent_names), ("gateways", gateway_names)):
        problems = [problem for n in names if (problem := name_problem(n)) is not None]
        if problems:
            raise ConfigError(f"--{key}: {'; '.join(problems)}", key=key)
    shared = sorted(set(agent_names) & set(gateway_names))
    if shared:
        raise ConfigError(f"names used by both an agent and a gateway: {shared}", key="gateways")
    return agent_names, gateway_names


def pbkdf2_line(username: str, password: str, salt: bytes | None = None) -> str:
    """A password-file line in the format Mosquitto 2 reads: user:$7$iter$salt$hash."""
    salt = salt or os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"{username}:$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def password_file(accounts: list[MqttAccount]) -> str:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        return "".join(pbkdf2_line(a.username, a.password) + "\n" for a in accounts)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "passwd"
        path.touch(mode=0o600)
        for account in accounts:
            subprocess.run(
                [tool, "-b", str(path), account.username, account.password],
                check=True,
                capture_output=True,
            )
        return path.read_text()


def acl_file(accounts: list[MqttAccount]) -> str:
    """Only the listed topics; Mosquitto denies everything an ACL file does not grant."""
    lines = ["# generated by `tme mqtt acl`: every other topic is denied", ""]
    for account in accounts:
        lines.append(f"user {account.username}")
        lines += [f"topic read {t}" for t in account.reads]
        lines += [f"topic write {t}" for t in account.writes]
        lines.append("")
    return "\n".join(lines)


def broker_config(out: Path, listeners: Sequence[str] = (DEFAULT_LISTENER,)) -> str:
    """A mosquitto.conf that applies the files, with each listener tying client id to
    username. `use_username_as_clientid` is a listener option: it must follow its
    `listener` line, since before the first one Mosquitto opens an extra default
    listener on port 1883 of every interface for it, and leaves the others without."""
    for listener in listeners:
        if not LISTENER_RULE.match(listener):
            raise ConfigError(f"not a listener (PORT [ADDRESS]): {listener!r}", key="listener")
    lines = [
        "# generated by `tme mqtt acl`",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out / 'passwd'}",
        f"acl_file {out / 'acl'}",
        "",
        "# Each listener takes the username as client id: an account has only its own session.",
        "# A listener added by hand needs that line after it too (and TLS for remote agents).",
    ]
    for listener in listeners:
        lines += [f"listener {listener}", "use_username_as_clientid true"]
    lines += [
        "",
        "# Keep the QoS 1 commands queued for an agent that is away: Mosquitto's default of",
        "# 1000 a client drops the rest without a word. As configs/mosquitto/tme.conf.",
        "max_queued_messages 100000",
        "max_queued_bytes 0",
        "# Send small packets at once (no ~40 ms wait for a delayed TCP ACK).",
        "set_tcp_nodelay true",
    ]
    return "\n".join(lines) + "\n"


def write_site_files(
    site: str,
    agents: Sequence[str],
    out: Path,
    gateways: Sequence[str] = (DEFAULT_GATEWAY,),
    listeners: Sequence[str] = (DEFAULT_LISTENER,),
) -> list[MqttAccount]:
    """Write passwd, acl, mosquitto.conf and credentials (mode 600) into `out`."""
    accounts = site_accounts(site, agents, gateways)
    config = broker_config(out.resolve(), listeners)  # checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    secret_files = {
        "passwd": password_file(accounts),
        "credentials": "".join(f"{a.username} {a.password}\n" for a in accounts),
    }
    for name, text in secret_files.items():
        path = out / name
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
    (out / "acl").write_text(acl_file(accounts))
    (out / "mosquitto.conf").write_text(config)
    return accounts
