"""Settings: layers and their precedence, sources, every error path, production mode, masking."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tme.config import Settings, effective_items, load_settings
from tme.errors import ConfigError

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
STRONG_KEY = "k3y-" + "x7Qp" * 8


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(folder: Path, **env: str) -> Settings:
    return load_settings(config_dir=folder, environ=env)


def error_of(folder: Path, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(folder, **env)
    return info.value


# --- layers and precedence ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "default", "override", "env_name", "env_value", "expected"),
    [
        ("http.port", 8100, 8200, "TME_HTTP__PORT", "8300", 8300),
        ("broker.heartbeat_s", 11, 12, "TME_BROKER__HEARTBEAT_S", "13", 13),
        ("logging.level", "DEBUG", "ERROR", "TME_LOGGING__LEVEL", "warning", "WARNING"),
        (
            "notifications.email.smtp_host",
            "a.example.com",
            "b.example.com",
            "TME_NOTIFICATIONS__EMAIL__SMTP_HOST",
            "c.example.com",
            "c.example.com",
        ),
    ],
)
def test_precedence_is_default_then_override_then_env(
    tmp_path: Path,
    key: str,
    default: Any,
    override: Any,
    env_name: str,
    env_value: str,
    expected: Any,
) -> None:
    def nested(value: Any) -> dict[str, Any]:
        tree: Any = value
        for part in reversed(key.split(".")):
            tree = {part: tree}
        return tree

    def value_of(settings: Settings) -> Any:
        found: Any = settings
        for part in key.split("."):
            found = getattr(found, part)
        return found

    default_path = write(tmp_path, "default.yaml", yaml.safe_dump(nested(default)))
    settings = load(tmp_path)
    assert value_of(settings) == default
    assert settings.sources[key] == f"default.yaml ({default_path})"

    override_path = write(tmp_path, "override.yaml", yaml.safe_dump(nested(override)))
    settings = load(tmp_path)
    assert value_of(settings) == override
    assert settings.sources[key] == f"override ({override_path})"

    settings = load(tmp_path, **{env_name: env_value})
    assert value_of(settings) == expected
    assert settings.sources[key] == f"env {env_name}"


def test_deep_merge_keeps_sibling_keys(tmp_path: Path) -> None:
    write(
        tmp_path,
        "default.yaml",
        """
        http: {host: 10.0.0.1, port: 8100}
        notifications:
          email: {smtp_host: mail.example.com, smtp_port: 25}
        logging:
          loggers: {pika: ERROR}
    """,
    )
    write(
        tmp_path,
        "override.yaml",
        """
        http: {port: 8200}
        notifications:
          email: {smtp_port: 2525}
    """,
    )
    settings = load(tmp_path, TME_LOGGING__LOGGERS__URLLIB3="info")
    assert (settings.http.host, settings.http.port) == ("10.0.0.1", 8200)
    assert settings.notifications.email.smtp_host == "mail.example.com"
    assert settings.notifications.email.smtp_port == 2525
    assert settings.logging.loggers == {
        "pika": "ERROR",
        "amqtt": "WARNING",
        "transitions": "WARNING",
        "alembic": "WARNING",
        "httpx": "WARNING",
        "pymodbus": "WARNING",
        "apscheduler": "WARNING",
        "urllib3": "INFO",
    }
    assert settings.sources["http.host"].startswith("default.yaml (")
    assert settings.sources["logging.loggers.amqtt"] == "default"


def test_lists_are_replaced_not_merged(tmp_path: Path) -> None:
    write(tmp_path, "default.yaml", "http: {cors_origins: [https://a.example]}\n")
    write(tmp_path, "override.yaml", "http: {cors_origins: [https://b.example]}\n")
    assert load(tmp_path).http.cors_origins == ["https://b.example"]


def test_env_values_are_read_as_yaml_except_for_text_settings(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        TME_HTTP__CORS_ORIGINS="[https://a.example, https://b.example]",
        TME_DATABASE__ECHO="true",
        TME_ERROR_TRACKING__SAMPLE_RATE="0.25",
        TME_HTTP__PUBLIC_URL="true",
        TME_AUTH__SECRET_KEY="12345",
        TME_MQTT__PROTOCOL="5",
        TME_ENVIRONMENT="local",
    )
    assert settings.http.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.database.echo is True
    assert settings.error_tracking.sample_rate == 0.25
    assert settings.http.public_url == "true"
    assert settings.auth.secret_key.get_secret_value() == "12345"
    assert settings.mqtt.protocol == "5"
    assert settings.sources["environment"] == "env TME_ENVIRONMENT"


def test_single_underscore_tme_variables_are_not_settings(tmp_path: Path) -> None:
    settings = load(tmp_path, TME_URL="http://x", TME_TOKEN="t", TME_TEST_POSTGRES_URL="p")
    assert settings.http.port == 8000


def test_config_dir_comes_from_tme_config_dir(tmp_path: Path) -> None:
    path = write(tmp_path, "override.yaml", "http: {port: 8123}\n")
    settings = load_settings(environ={"TME_CONFIG_DIR": str(tmp_path)})
    assert settings.http.port == 8123
    assert settings.sources["http.port"] == f"override ({path})"


def test_missing_config_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="TME_CONFIG_DIR"):
        load_settings(environ={"TME_CONFIG_DIR": str(tmp_path / "nope")})


def test_local_configs_folder_is_used_when_present(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ={}).http.port == 8000
    (tmp_path / "configs").mkdir()
    write(tmp_path / "configs", "override.yaml", "http: {port: 8124}\n")
    assert load_settings(environ={}).http.port == 8124


def test_builtin_defaults_when_there_is_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.model_dump() == Settings().model_dump()
    assert set(settings.sources.values()) == {"default"}


def test_worker_count_alias_sits_between_files_and_tme_variables(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", "agent: {worker_count: 2}\n")
    settings = load(tmp_path, WORKER_COUNT="7")
    assert settings.agent.worker_count == 7
    assert settings.sources["agent.worker_count"] == "env WORKER_COUNT"
    assert load(tmp_path, WORKER_COUNT="7", TME_AGENT__WORKER_COUNT="9").agent.worker_count == 9


def test_settings_can_be_built_in_code_with_defaults() -> None:
    settings = Settings(http={"port": 0}, broker={"url": "memory://"})  # type: ignore[arg-type]
    assert settings.http.port == 0
    assert settings.broker.effective_url == "memory://"
    assert settings.mqtt.port == 1883
    assert effective_items(settings)[0] == ("environment", "local", "default")


# --- errors ---------------------------------------------------------------------


@pytest.mark.parametrize("file_name", ["default.yaml", "override.yaml"])
def test_unknown_key_in_a_file_names_key_file_and_suggestion(
    tmp_path: Path, file_name: str
) -> None:
    path = write(tmp_path, file_name, "htp:\n  port: 9000\n")
    error = error_of(tmp_path)
    assert error.message == f'unknown setting "htp.port" in {path} (did you mean "http"?)'
    assert (error.key, error.source.endswith(f"({path})")) == ("htp.port", True)


def test_unknown_nested_key_suggests_the_sibling(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", "broker:\n  pasword: x\n")
    error = error_of(tmp_path)
    assert 'unknown setting "broker.pasword"' in error.message
    assert '(did you mean "password"?)' in error.message


def test_unknown_key_in_env(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_HTP__PORT="1")
    assert error.message == 'unknown setting "htp.port" in env TME_HTP__PORT (did you mean "http"?)'
    assert error.source == "env TME_HTP__PORT"


@pytest.mark.parametrize(
    ("name", "meant", "key"),
    [
        ("TME_HTTP_PORT", "TME_HTTP__PORT", "http.port"),
        ("TME_AGENT_WORKER_COUNT", "TME_AGENT__WORKER_COUNT", "agent.worker_count"),
        (
            "TME_NOTIFICATIONS_EMAIL_SMTP_HOST",
            "TME_NOTIFICATIONS__EMAIL__SMTP_HOST",
            "notifications.email.smtp_host",
        ),
    ],
)
def test_a_setting_spelled_with_single_underscores_is_refused_not_ignored(
    tmp_path: Path, name: str, meant: str, key: str
) -> None:
    error = error_of(tmp_path, **{name: "8300"})
    assert error.message == (
        f"env {name} is not read: a setting's variable separates its section and key "
        f"with two underscores, {meant} ({key})"
    )
    assert error.source == f"env {name}"


def test_other_tme_variables_are_not_settings(tmp_path: Path) -> None:
    plain = {"TME_URL": "http://x", "TME_TOKEN": "t", "TME_CONTROLLER_USER": "u", "TME_HTTP": "1"}
    assert load(tmp_path, **plain).http.port == Settings().http.port


def test_wrong_type_from_env(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_HTTP__PORT="abc")
    assert error.message == (
        'http.port: must be an integer between 0 and 65535 (got "abc" from env TME_HTTP__PORT)'
    )
    assert (error.key, error.source) == ("http.port", "env TME_HTTP__PORT")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TME_HTTP__PORT", "false", "http.port: must be an integer between 0 and 65535"),
        ("TME_BROKER__PREFETCH", "true", "broker.prefetch: must be an integer of at least 1"),
        (
            "TME_ERROR_TRACKING__SAMPLE_RATE",
            "true",
            "error_tracking.sample_rate: must be a number between 0.0 and 1.0",
        ),
    ],
)
def test_true_or_false_is_no_number(tmp_path: Path, name: str, value: str, expected: str) -> None:
    # Read as 1 or 0 before: TME_HTTP__PORT=false bound a port the OS chose.
    error = error_of(tmp_path, **{name: value})
    assert error.message == f'{expected} (got "{value}" from env {name})'


@pytest.mark.parametrize(
    ("name", "value", "key"),
    [
        ("TME_HTTP__PORT", "yes", "http.port"),
        ("TME_HTTP__PORT", "~", "http.port"),
        ("WORKER_COUNT", "off", "agent.worker_count"),
    ],
)
def test_a_wrong_variable_is_quoted_as_typed(
    tmp_path: Path, name: str, value: str, key: str
) -> None:
    # YAML reads yes as true and ~ as null; the error said "got true", which the operator
    # never typed, so could not find it in their environment.
    error = error_of(tmp_path, **{name: value})
    assert error.message.startswith(f"{key}: must be an integer")
    assert error.message.endswith(f'(got "{value}" from env {name})')
    assert (error.key, error.source) == (key, f"env {name}")


def test_yes_in_a_file_is_no_port(tmp_path: Path) -> None:
    path = write(tmp_path, "override.yaml", "http: {port: yes}\n")
    error = error_of(tmp_path)
    expected = "http.port: must be an integer between 0 and 65535"
    assert error.message == f"{expected} (got true from {path})"


def test_a_webhook_event_no_rule_fires_on_is_refused(tmp_path: Path) -> None:
    # `events: [run.failed]`, as configuration.md and override.example.yaml showed, was
    # taken and the webhook never sent anything: notifications fire on failed, timed_out,
    # lost and agent_offline.
    value = '[{url: "https://h.example/x", events: [failed, run.failed]}]'
    error = error_of(tmp_path, TME_NOTIFICATIONS__WEBHOOKS=value)
    assert error.message == (
        'notifications.webhooks.0.events.1: must be one of "failed", "timed_out", "lost",'
        ' "agent_offline", "device_stopped", "slow" (got "run.failed" from env'
        " TME_NOTIFICATIONS__WEBHOOKS)"
    )
    hooks = load(tmp_path, TME_NOTIFICATIONS__WEBHOOKS=value.replace(", run.failed", ""))
    assert hooks.notifications.webhooks[0].events == ["failed"]


def test_webhook_events_are_those_a_rule_fires_on() -> None:
    from typing import get_args

    from tme.controller.notifications.models import NOTIFY_EVENTS
    from tme.settings_models import NotifyEvent

    assert get_args(NotifyEvent) == NOTIFY_EVENTS


def test_a_section_given_twice_in_a_file_is_refused(tmp_path: Path) -> None:
    # The second `http:` replaced the first whole: port 9000 was dropped without a word.
    path = write(tmp_path, "override.yaml", "http: {port: 9000}\nlogging: {level: DEBUG}\n"
                                            "http: {host: 127.0.0.1}\n")  # fmt: skip
    error = error_of(tmp_path)
    assert error.message == (
        f"{path}: not valid YAML at line 3, column 1: found key 'http' twice (first at line 1):"
        " the second would replace the first (while reading a mapping)"
    )


@pytest.mark.parametrize("file_name", ["default.yaml", "override.yaml"])
def test_wrong_type_from_a_file(tmp_path: Path, file_name: str) -> None:
    path = write(tmp_path, file_name, "database:\n  echo: sometimes\n")
    error = error_of(tmp_path)
    assert error.message == f'database.echo: must be true or false (got "sometimes" from {path})'
    assert error.key == "database.echo"


def test_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "override.yaml", "http: 8000\n")
    assert error_of(tmp_path).message == f"http: must be a mapping (got 8000 from {path})"


def test_out_of_range_values(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", "broker: {port: 70000}\nerror_tracking: {sample_rate: 2}\n")
    error = error_of(tmp_path)
    assert "broker.port: must be an integer between 1 and 65535 (got 70000 from" in error.message
    assert (
        "error_tracking.sample_rate: must be a number between 0.0 and 1.0 (got 2" in error.message
    )


def test_bad_log_level(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_LOGGING__LEVEL="LOUD")
    assert error.message.startswith('logging.level: must be one of "DEBUG", "INFO"')
    assert error.message.endswith('(got "LOUD" from env TME_LOGGING__LEVEL)')


def test_bad_urls(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_BROKER__URL="redis://x")
    assert error.message.startswith("broker.url: must be an amqp://, amqps:// or memory:// URL")
    hooks = '[{url: "ftp://x", secret: s}]'
    error = error_of(tmp_path, TME_NOTIFICATIONS__WEBHOOKS=hooks)
    assert error.key == "notifications.webhooks.0.url"
    assert error.source == "env TME_NOTIFICATIONS__WEBHOOKS"


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "override.yaml", "http:\n  port: [8000\n")
    error = error_of(tmp_path)
    assert error.message.startswith(f"{path}: not valid YAML at line 3")
    assert error.source == str(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "default.yaml", "- http\n- port\n")
    assert error_of(tmp_path).message == (
        f"{path}: the top level must be a mapping of sections, not a list"
    )


def test_empty_file_is_no_settings(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", "# nothing yet\n")
    assert load(tmp_path).http.port == 8000


def test_missing_secret_file_names_key_and_source(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    error = error_of(tmp_path, TME_AUTH__SECRET_KEY_FILE=str(missing))
    assert error.message == (
        f'auth.secret_key_file: cannot read secret file "{missing}" (No such file or directory)'
        " (from env TME_AUTH__SECRET_KEY_FILE)"
    )
    assert error.key == "auth.secret_key_file"


def test_empty_secret_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "empty", "\n")
    error = error_of(tmp_path, TME_BROKER__PASSWORD_FILE=str(path))
    assert "broker.password_file" in error.message and "is empty" in error.message


def test_errors_never_show_a_secret_value(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", "auth: {secret_key: [hunter2-value]}\n")
    error = error_of(tmp_path)
    assert error.key == "auth.secret_key"
    assert "must be a string" in error.message
    assert "hunter2" not in error.message


# --- secrets ------------------------------------------------------------------


def test_secret_file_content_is_stripped_and_wins_over_the_value(tmp_path: Path) -> None:
    secret = write(tmp_path, "broker_password", "  s3cret-from-file\n")
    settings = load(tmp_path, TME_BROKER__PASSWORD="other", TME_BROKER__PASSWORD_FILE=str(secret))
    assert settings.broker.password.get_secret_value() == "s3cret-from-file"
    assert settings.sources["broker.password"] == f"file ({secret})"


def test_webhook_secret_from_file(tmp_path: Path) -> None:
    secret = write(tmp_path, "hook", "hook-secret\n")
    write(
        tmp_path,
        "override.yaml",
        f"""
        notifications:
          webhooks:
            - url: https://hooks.example.com/tme
              secret_file: {secret}
              events: [failed]
    """,
    )
    hook = load(tmp_path).notifications.webhooks[0]
    assert hook.secret.get_secret_value() == "hook-secret"
    assert hook.events == ["failed"]


def test_effective_items_mask_secrets_and_report_sources(tmp_path: Path) -> None:
    override = write(tmp_path, "override.yaml", "mqtt: {username: edge, password: mqtt-pass}\n")
    settings = load(tmp_path, TME_AUTH__SECRET_KEY="the-real-key-value")
    items = {key: (value, source) for key, value, source in effective_items(settings)}
    assert items["auth.secret_key"] == ("****", "env TME_AUTH__SECRET_KEY")
    assert items["mqtt.password"] == ("****", f"override ({override})")
    assert items["mqtt.username"] == ("edge", f"override ({override})")
    assert items["error_tracking.dsn"] == ("", "default")
    assert items["http.port"] == ("8000", "default")
    assert items["database.echo"] == ("false", "default")
    flat = json.dumps(effective_items(settings))
    assert "the-real-key-value" not in flat and "mqtt-pass" not in flat
    assert items["broker.password"] == ("****", "default")


# --- production mode ----------------------------------------------------------


def test_production_refuses_empty_and_default_secrets(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_ENVIRONMENT="production")
    assert error.message.startswith("production mode refuses empty or default secrets:")
    assert "auth.secret_key (empty)" in error.message
    assert 'broker.password (empty or the default "guest")' in error.message
    assert error.key == "auth.secret_key"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TME_AUTH__SECRET_KEY": "changeme", "TME_BROKER__PASSWORD": "x9"}, "auth.secret_key"),
        ({"TME_BROKER__URL": "amqp://guest:guest@mq:5672/%2F"}, "broker.password"),
        ({"TME_MQTT__USERNAME": "edge"}, "mqtt.password"),
        ({"TME_NOTIFICATIONS__WEBHOOKS": "[{url: 'https://h.example'}]"}, "webhooks.0.secret"),
        ({"TME_ERROR_TRACKING__ENABLED": "true"}, "error_tracking.dsn"),
    ],
)
def test_production_names_each_weak_secret(tmp_path: Path, env: dict[str, str], named: str) -> None:
    base = {
        "TME_ENVIRONMENT": "production",
        "TME_AUTH__SECRET_KEY": STRONG_KEY,
        "TME_BROKER__PASSWORD": "rabbit-pass",
    }
    error = error_of(tmp_path, **{**base, **env})
    assert named in error.message


def test_production_accepts_real_secrets(tmp_path: Path) -> None:
    key_file = write(tmp_path, "secret_key", STRONG_KEY + "\n")
    write(
        tmp_path,
        "override.yaml",
        f"environment: production\nauth: {{secret_key_file: {key_file}}}\n",
    )
    settings = load(tmp_path, TME_BROKER__PASSWORD="rabbit-pass", TME_AUTH__AUDIT_KEY=STRONG_KEY)
    assert settings.environment == "production"
    assert settings.auth.secret_key.get_secret_value() == STRONG_KEY
    memory = load(tmp_path, TME_BROKER__URL="memory://", TME_AUTH__AUDIT_KEY=STRONG_KEY)
    assert memory.broker.effective_url == "memory://"


def test_local_mode_accepts_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path).broker.password.get_secret_value() == "guest"


# --- derived values -----------------------------------------------------------


def test_broker_and_mqtt_urls_are_built_from_parts() -> None:
    settings = Settings(
        broker={"host": "mq", "port": 5673, "user": "tme", "password": "p@ss/word"},  # type: ignore[arg-type]
        mqtt={"host": "broker", "port": 8883, "username": "edge", "password": "pw"},  # type: ignore[arg-type]
    )
    assert settings.broker.effective_url == "amqp://tme:p%40ss%2Fword@mq:5673/%2F"
    assert settings.mqtt.effective_url == "mqtt://edge:pw@broker:8883"
    assert Settings().mqtt.effective_url == "mqtt://127.0.0.1:1883"


def test_a_broker_url_with_a_user_and_no_password_takes_the_password_file(
    tmp_path: Path,
) -> None:
    # deployment.md's production controller: TME_BROKER__URL names the user, the password
    # comes from TME_BROKER__PASSWORD_FILE. The file was left unread and the URL, with no
    # password, stopped the controller with "bad AMQP URL: argument of type 'NoneType' is
    # not iterable".
    import pika

    secret = tmp_path / "broker_password"
    secret.write_text("p@ss/word\n", encoding="utf-8")
    settings = load(
        tmp_path,
        TME_BROKER__URL="amqp://tme-controller@rabbitmq:5672/tme",
        TME_BROKER__PASSWORD_FILE=str(secret),
    )
    url = settings.broker.effective_url
    assert url == "amqp://tme-controller:p%40ss%2Fword@rabbitmq:5672/tme"
    credentials = pika.URLParameters(url).credentials
    assert (credentials.username, credentials.password) == ("tme-controller", "p@ss/word")
    production = load(
        tmp_path,
        TME_ENVIRONMENT="production",
        TME_AUTH__SECRET_KEY="a-long-enough-signing-key",
        TME_AUTH__AUDIT_KEY="a-long-enough-audit-key",
        TME_BROKER__URL="amqp://tme-controller@rabbitmq:5672/tme",
        TME_BROKER__PASSWORD_FILE=str(secret),
    )  # its check read the URL's own password, none, and refused the broker's
    assert production.broker.effective_url == url
    no_file = error_of(
        tmp_path,
        TME_ENVIRONMENT="production",
        TME_AUTH__SECRET_KEY="a-long-enough-signing-key",
        TME_AUTH__AUDIT_KEY="a-long-enough-audit-key",
        TME_BROKER__URL="amqp://tme-controller@rabbitmq:5672/tme",
    )  # the default "guest" would go with the user
    assert "broker.password" in no_file.message
    given = "amqps://u:own@mq:5671/v"  # a URL with its own password keeps it
    assert load(tmp_path, TME_BROKER__URL=given).broker.effective_url == given
    bare = "amqp://mq:5672/v"  # no user either: as given
    assert load(tmp_path, TME_BROKER__URL=bare).broker.effective_url == bare


def test_relative_sqlite_path_follows_cwd_and_folder_is_made_on_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    database = load_settings(environ={}).database
    assert database.url == f"sqlite:///{tmp_path}/data/tme.db"
    assert not (tmp_path / "data").exists()
    database.ensure_parent_dir()
    assert (tmp_path / "data").is_dir()
    assert Settings(database={"url": "sqlite:///:memory:"}).database.sqlite_path is None  # type: ignore[arg-type]


# --- default.yaml -------------------------------------------------------------


def _leaf_keys(tree: Any, prefix: str = "") -> set[str]:
    if isinstance(tree, dict) and tree:
        return set().union(*(_leaf_keys(v, f"{prefix}{k}.") for k, v in tree.items()))
    return {prefix.rstrip(".")}


def test_default_yaml_agrees_with_model_defaults() -> None:
    raw = yaml.safe_load((REPO_CONFIGS / "default.yaml").read_text(encoding="utf-8"))
    from_file = Settings.model_validate(raw)
    assert from_file.model_dump() == Settings().model_dump()
    model_keys = {key for key, _, _ in effective_items(Settings())}
    assert _leaf_keys(raw) == model_keys


def test_every_key_in_default_yaml_has_a_comment() -> None:
    lines = (REPO_CONFIGS / "default.yaml").read_text(encoding="utf-8").splitlines()
    missing = []

    def visit(node: yaml.Node, prefix: str) -> None:
        assert isinstance(node, yaml.MappingNode)
        for key_node, value_node in node.value:
            key = prefix + key_node.value
            line = key_node.start_mark.line
            commented = "#" in lines[line] or lines[line - 1].strip().startswith("#")
            if not commented:
                missing.append(key)
            if isinstance(value_node, yaml.MappingNode) and value_node.value:
                visit(value_node, key + ".")

    visit(yaml.compose("\n".join(lines)), "")
    assert missing == []


def test_override_example_is_valid(tmp_path: Path) -> None:
    write(tmp_path, "override.yaml", (REPO_CONFIGS / "override.example.yaml").read_text())
    for name in ("tme_broker_password", "tme_secret_key", "tme_audit_key", "tme_webhook"):
        write(tmp_path, name, STRONG_KEY)
    text = (tmp_path / "override.yaml").read_text().replace("/run/secrets", str(tmp_path))
    (tmp_path / "override.yaml").write_text(text)
    settings = load(tmp_path)
    assert settings.environment == "production"
    assert settings.notifications.webhooks[0].secret.get_secret_value() == STRONG_KEY


# --- tme config show ----------------------------------------------------------


def test_config_show_keeps_every_key_whole_at_80_columns(tmp_path: Path) -> None:
    # Rich cut the key column short ("error_tracking.sample_…"), then folded it in two.
    from tme.cli.main import app
    from tme.cli.output import console

    width = console.width
    console.width = 80
    try:
        table = CliRunner().invoke(app, ["config", "show", "--config-dir", str(tmp_path)], env={})
    finally:
        console.width = width
    assert table.exit_code == 0, table.output
    shown = {line.split("│")[1].strip() for line in table.output.splitlines() if "│" in line}
    keys = {key for key, _, _ in effective_items(load_settings(config_dir=tmp_path, environ={}))}
    assert keys <= shown


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    from tme.cli.main import app

    env = {"TME_AUTH__SECRET_KEY": "shown-nowhere-123", "TME_HTTP__PORT": "8765"}
    runner = CliRunner()
    table = runner.invoke(app, ["config", "show", "--config-dir", str(tmp_path)], env=env)
    assert table.exit_code == 0, table.output
    assert "shown-nowhere" not in table.output
    assert "auth.secret_key" in table.output and "****" in table.output
    assert "8765" in table.output

    result = runner.invoke(
        app, ["config", "show", "--json", "--config-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 0, result.output
    rows = {row["key"]: row for row in json.loads(result.output)}
    assert rows["auth.secret_key"] == {
        "key": "auth.secret_key",
        "value": "****",
        "source": "env TME_AUTH__SECRET_KEY",
    }
    assert rows["http.port"]["value"] == "8765"
    assert "shown-nowhere" not in result.output


def test_config_show_masks_a_password_inside_a_url(tmp_path: Path) -> None:
    # configuration.md's production example gives the broker's password in
    # TME_BROKER__URL and runs `tme config show`, which printed it in full.
    from tme.cli.main import app

    env = {
        "TME_BROKER__URL": "amqps://tme:mq-s3cret@mq.example.com:5671/tme",
        "TME_MQTT__URL": "mqtt://edge:mqtt-s3cret@broker:1883",
        "TME_DATABASE__URL": "postgresql+psycopg://tme:db-s3cret@db.example.com/tme",
    }
    shown = CliRunner().invoke(
        app, ["config", "show", "--json", "--config-dir", str(tmp_path)], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert "s3cret" not in shown.output
    rows = {row["key"]: row["value"] for row in json.loads(shown.output)}
    assert rows["broker.url"] == "amqps://tme:****@mq.example.com:5671/tme"
    assert rows["mqtt.url"] == "mqtt://edge:****@broker:1883"
    assert rows["database.url"] == "postgresql+psycopg://tme:****@db.example.com/tme"
    assert rows["http.host"] == "0.0.0.0"  # no URL, nothing to hide


def test_config_show_reports_a_config_error_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tme.cli.main import app, run

    monkeypatch.setenv("TME_HTTP__PORT", "abc")
    result = CliRunner().invoke(app, ["config", "show", "--config-dir", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)

    monkeypatch.setattr(sys, "argv", ["tme", "config", "show", "--config-dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "http.port: must be an integer" in err and "TME_HTTP__PORT" in err


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("notaurl", "no URL (SCHEME://...)"),
        ("mysql://tme:s3cret@db/tme", "a URL of 'mysql'"),
        ("postgres://tme@db/tme", "a URL of 'postgres'"),
    ],
)
def test_a_database_url_tme_cannot_use_is_refused_at_load(
    tmp_path: Path, url: str, said: str
) -> None:
    """Refused with the key when the settings load, not when a process first opens the
    database; a password in it is never shown."""
    error = error_of(tmp_path, TME_DATABASE__URL=url)
    assert error.message.startswith(f"database.url: {said}: TME runs on SQLite")
    assert "from env TME_DATABASE__URL" in error.message
    assert "s3cret" not in error.message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite://",
        "sqlite:///:memory:",
        "sqlite+pysqlite:////tmp/t.db",
        "postgresql+psycopg://u:p@h/d",
    ],
)
def test_the_database_urls_tme_runs_on_are_taken(tmp_path: Path, url: str) -> None:
    assert load(tmp_path, TME_DATABASE__URL=url).database.url == url


def test_a_maximum_task_timeout_below_the_default_is_refused(tmp_path: Path) -> None:
    error = error_of(tmp_path, TME_TASKS__MAX_TIMEOUT_S="10")
    assert error.message.startswith(
        "tasks.max_timeout_s: must be at least tasks.default_timeout_s (30)"
    )
    assert load(tmp_path, TME_TASKS__MAX_TIMEOUT_S="30").tasks.max_timeout_s == 30


def test_a_slow_history_shorter_than_its_min_runs_is_refused(tmp_path: Path) -> None:
    # The usual is the median of at most `history` runs: with fewer than `min_runs`
    # behind it, no run would ever be slow, whatever it took.
    error = error_of(tmp_path, TME_NOTIFICATIONS__SLOW__HISTORY="3")
    assert error.message.startswith(
        "notifications.slow.history: must be at least notifications.slow.min_runs (5)"
    )
    slow = load(tmp_path, TME_NOTIFICATIONS__SLOW__HISTORY="5").notifications.slow
    assert (slow.history, slow.min_runs) == (5, 5)
