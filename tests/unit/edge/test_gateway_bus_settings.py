"""`tme gateway` opens its bus with the broker settings (YAML, TME_* variables), as
the controller does; it opened it with the built-in options whatever they said."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tme.agents.gateway import Gateway
from tme.bus.options import BusOptions
from tme.cli.main import app


class Built(Exception):
    """Raised once the gateway is built: the test needs it, not a running gateway."""


GATEWAY_INIT = Gateway.__init__


def _built_gateway(
    monkeypatch: pytest.MonkeyPatch, broker: str, env: dict[str, str], *args: str
) -> Gateway:
    """The gateway `tme gateway ... ARGS` builds with these settings, not started.

    Its logging is left as it was: configured here, it would write onto CliRunner's
    stderr, closed once the command returns, for the rest of the session."""
    import tme.logs

    built: list[Gateway] = []

    def build(gateway: Gateway, *given: object, **kwargs: object) -> None:
        GATEWAY_INIT(gateway, *given, **kwargs)  # type: ignore[arg-type]
        built.append(gateway)
        raise Built

    monkeypatch.setattr(Gateway, "__init__", build)
    monkeypatch.setattr(tme.logs, "configure_logging", lambda settings: None)
    command = ["gateway", "--site", "plant-7", "--broker", broker, *args]
    result = CliRunner().invoke(app, command, env=env)
    assert isinstance(result.exception, Built), result.output
    return built[0]


def test_the_broker_settings_reach_the_gateways_bus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "override.yaml").write_text(
        textwrap.dedent(
            """
            broker:
              prefetch: 7
              delivery_limit: 9
              confirm_timeout_s: 4
              blocked_connection_timeout_s: 61
            """
        ),
        encoding="utf-8",
    )
    env = {"TME_CONFIG_DIR": str(tmp_path), "TME_BROKER__HEARTBEAT_S": "13"}
    gateway = _built_gateway(monkeypatch, "memory://gw-settings", env)
    options: BusOptions = gateway.bus.options  # type: ignore[attr-defined]
    assert (options.prefetch, options.delivery_limit, options.heartbeat_s) == (7, 9, 13)
    assert (options.confirm_timeout_s, options.blocked_connection_timeout_s) == (4, 61)
    assert options.declare_topology is True  # gateway.declare_topology, as before


def test_the_logging_settings_reach_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """deployment.md's `logging.format: json` for log shippers (and `logging.level`,
    `logging.file`): `tme gateway` logged plain lines at INFO whatever they said."""
    import tme.logs

    configured: list[object] = []
    monkeypatch.setattr(tme.logs, "configure_logging", configured.append)

    def build(gateway: Gateway, *args: object, **kwargs: object) -> None:
        raise Built

    monkeypatch.setattr(Gateway, "__init__", build)
    for verbose, level in (([], "WARNING"), (["-v"], "DEBUG")):
        result = CliRunner().invoke(
            app,
            ["gateway", "--site", "plant-7", "--broker", "memory://gw-logging", *verbose],
            env={"TME_LOGGING__FORMAT": "json", "TME_LOGGING__LEVEL": "WARNING"},
        )
        assert isinstance(result.exception, Built), result.output
        logging_settings = configured.pop()
        assert logging_settings.format == "json"  # type: ignore[attr-defined]
        assert logging_settings.level == level  # type: ignore[attr-defined]


def test_the_mqtt_settings_reach_the_gateways_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deployment.md logs a gateway in with TME_MQTT__USERNAME and TME_MQTT__PASSWORD_FILE,
    the README gives it --mqtt URL: with a URL the credentials were dropped (the broker
    answered "Not authorized" on every try), and mqtt.protocol and mqtt.keepalive_s were
    never read."""
    secret = tmp_path / "mqtt_gw1"
    secret.write_text("gw1-pass\n", encoding="utf-8")
    env = {
        "TME_MQTT__USERNAME": "gw1@plant-7",
        "TME_MQTT__PASSWORD_FILE": str(secret),
        "TME_MQTT__PROTOCOL": "5",
        "TME_MQTT__KEEPALIVE_S": "12",
    }
    mqtt_url = ["--mqtt", "mqtt://127.0.0.1:1884"]
    for given in ([], mqtt_url):
        gateway = _built_gateway(monkeypatch, "memory://gw-mqtt", env, "--name", "gw1", *given)
        config = gateway.config
        assert (config.mqtt_username, config.mqtt_password) == ("gw1@plant-7", "gw1-pass")
        assert gateway.link.protocol == "5" and gateway.link.keepalive_s == 12


def test_the_gateways_mqtt_5_session_lasts_as_long_as_the_setting_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """mqtt.session_expiry_s was read by nothing: MQTT 5 sessions lasted a week whatever
    it said. Its default is that week now, and another value reaches the CONNECT."""
    from tme.config import Settings

    assert Settings().mqtt.session_expiry_s == 7 * 24 * 3600
    env = {"TME_MQTT__PROTOCOL": "5", "TME_MQTT__SESSION_EXPIRY_S": "600"}
    link = _built_gateway(monkeypatch, "memory://gw-session", env).link
    sent: dict[str, object] = {}
    monkeypatch.setattr(link._client, "connect_async", lambda *a, **kw: sent.update(kw))
    monkeypatch.setattr(link._client, "loop_start", lambda: None)
    link.start()
    assert sent["properties"].SessionExpiryInterval == 600  # type: ignore[attr-defined]
