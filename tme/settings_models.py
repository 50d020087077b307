"""Typed settings of every TME process, one model per section of configs/default.yaml.

The defaults here are the built-in defaults and must equal configs/default.yaml
(a unit test holds them together). Secrets are `SecretStr` so they never reach a
log line, an error message or `tme config show` in clear text; each secret has a
sibling `<name>_file` setting naming a file that holds it (container secrets).
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

# Port 0 asks the OS for a free port, which tests of the HTTP server rely on.
HttpPort = Annotated[int, Field(ge=0, le=65535)]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[int, Field(ge=1)]
Count = Annotated[int, Field(ge=1)]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
# What a notification fires on (the controller's NOTIFY_EVENTS): a run ending badly, an
# agent going offline, a device stopped (from anywhere, or by its agent on link loss),
# or a run that succeeded but took much longer than its task usually does (`slow`, only
# when named: an empty list means every other event). A webhook naming another event
# would never be sent it.
NotifyEvent = Literal["failed", "timed_out", "lost", "agent_offline", "device_stopped", "slow"]


class Section(BaseModel):
    """Base of every section: unknown keys are errors, numbers are accepted for strings,
    and true or false is no number (`port: yes` in YAML, `TME_HTTP__PORT=true`)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 and false as 0: `http.port: false` would bind a port
        # the OS picks, and `prefetch: true` take one message at a time, with no error.
        kind = cls.model_fields[info.field_name].annotation if info.field_name else None
        if isinstance(value, bool) and kind in (int, float):
            noun = "integer" if kind is int else "number"
            raise PydanticCustomError(f"{kind.__name__}_type", f"Input should be a valid {noun}")
        return value


class HttpSettings(Section):
    host: str = "0.0.0.0"
    port: HttpPort = 8000
    max_body_bytes: Count = 1_048_576
    public_url: str = ""
    # Browser origins (scheme://host[:port]) whose pages may call the API with a bearer
    # token; a session cookie is never taken from another origin.
    cors_origins: list[str] = []
    # Reverse proxies (addresses or networks) whose X-Forwarded-For and -Proto are taken.
    trusted_proxies: list[str] = ["127.0.0.1"]

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], no path (or *)"
                )
        return origins


ORIGIN = re.compile(r"https?://[^/\s:]+(:[0-9]{1,5})?")


# SQLite (a file, or in memory: sqlite://) and PostgreSQL, with the drivers TME installs
DATABASE_URL = re.compile(r"^(sqlite(\+pysqlite)?://(/|$)|postgresql(\+(psycopg|psycopg2))?://)")


class DatabaseSettings(Section):
    url: str = Field(default="sqlite:///data/tme.db", validate_default=True)
    echo: bool = False
    pool_size: Count = 10
    # A connection to a server that stops answering (a dead link) fails within this long.
    tcp_timeout_s: Seconds = 30
    # Days of finished runs and other history kept; the controller prunes older rows
    # hourly. 0 keeps everything.
    retention_days: int = Field(default=0, ge=0)

    @field_validator("url")
    @classmethod
    def _absolute_sqlite_path(cls, url: str) -> str:
        # A URL of another database (or none at all) would pass here and fail only when
        # a process opens it: say so at load, with the key.
        if not DATABASE_URL.match(url):
            scheme = url.split("://", 1)[0] if "://" in url else None
            said = f"a URL of {scheme!r}" if scheme else "no URL (SCHEME://...)"
            raise ValueError(
                f"{said}: TME runs on SQLite (sqlite:///PATH) or PostgreSQL"
                " (postgresql+psycopg://USER@HOST:5432/DB)"
            )
        # A relative SQLite path would follow the process's working directory when the
        # engine is created; resolving it once, at load, pins it and shows it in full.
        prefix = "sqlite:///"
        path = url[len(prefix) :] if url.startswith(prefix) else ""
        if not path or path.startswith(":memory:") or Path(path).is_absolute():
            return url
        return prefix + str(Path.cwd() / path)

    @property
    def sqlite_path(self) -> Path | None:
        """The database file, or None for a server database or an in-memory one."""
        if not self.url.startswith("sqlite:///") or ":memory:" in self.url:
            return None
        return Path(self.url[len("sqlite:///") :].split("?", 1)[0])

    def ensure_parent_dir(self) -> None:
        """Create the folder of a SQLite file; called when the engine is made, not at load."""
        if self.sqlite_path is not None:
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)


class BrokerSettings(Section):
    url: str = ""
    host: str = "127.0.0.1"
    port: Port = 5672
    user: str = "guest"
    password: SecretStr = SecretStr("guest")
    password_file: str = ""
    vhost: str = "/"
    heartbeat_s: Seconds = 30
    blocked_connection_timeout_s: Seconds = 60
    prefetch: Count = 50
    delivery_limit: Count = 5
    confirm_timeout_s: Seconds = 10
    events_queue: str = "tme.controller.events"
    events_binding: str = "#"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and urlsplit(url).scheme not in {"amqp", "amqps", "memory"}:
            raise ValueError("must be an amqp://, amqps:// or memory:// URL, or empty")
        return url

    def bus_options(self) -> dict[str, Any]:
        """The options `open_bus` takes from this section (tme.bus.options.BusOptions),
        the same for the controller and the gateways."""
        return {
            "heartbeat_s": self.heartbeat_s,
            "blocked_connection_timeout_s": self.blocked_connection_timeout_s,
            "prefetch": self.prefetch,
            "delivery_limit": self.delivery_limit,
            "confirm_timeout_s": self.confirm_timeout_s,
        }

    @property
    def effective_url(self) -> str:
        """The URL to connect with: `url` when set, else built from the parts. A `url`
        that names a user but no password gets `password` (or `password_file`'s), so
        the password need not be written into the URL."""
        if self.url:
            parts = urlsplit(self.url)
            if parts.username is None or parts.password is not None or "@" not in parts.netloc:
                return self.url
            login, _, host = parts.netloc.rpartition("@")
            password = quote(self.password.get_secret_value(), safe="")
            return urlunsplit(parts._replace(netloc=f"{login}:{password}@{host}"))
        user = quote(self.user, safe="")
        password = quote(self.password.get_secret_value(), safe="")
        vhost = quote(self.vhost, safe="")
        return f"amqp://{user}:{password}@{self.host}:{self.port}/{vhost}"


class MqttSettings(Section):
    url: str = ""
    host: str = "127.0.0.1"
    port: Port = 1883
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: str = ""
    keepalive_s: Seconds = 30
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    # MQTT 5: how long the broker keeps the gateway's session (the agents' events queued
    # for it) while it is away; 3.1.1 sessions never expire.
    session_expiry_s: Annotated[int, Field(ge=0)] = 7 * 24 * 3600
    # An mqtts:// url's: the CA bundle that signed the broker's certificate (empty: the
    # system's), and the gateway's own certificate and key for a broker that asks.
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    @field_validator("protocol", mode="before")
    @classmethod
    def _protocol_as_text(cls, value: Any) -> Any:
        # YAML reads `protocol: 5` as a number.
        return str(value) if isinstance(value, int | float) else value

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        if url and urlsplit(url).scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must be an mqtt:// or (TLS) mqtts:// URL, or empty")
        return url

    @property
    def effective_url(self) -> str:
        """The URL to connect with: `url` when set, else built from the parts."""
        if self.url:
            return self.url
        credentials = ""
        if self.username:
            credentials = quote(self.username, safe="")
            if self.password.get_secret_value():
                credentials += ":" + quote(self.password.get_secret_value(), safe="")
            credentials += "@"
        return f"mqtt://{credentials}{self.host}:{self.port}"


class AgentSettings(Section):
    worker_count: Count = 4
    allow_shell: bool = False


class GatewaySettings(Section):
    declare_topology: bool = True
    heartbeat_s: Seconds = 30
    journal_keep_s: Annotated[float, Field(ge=0, le=366 * 24 * 3600)] = 86_400


class TaskSettings(Section):
    default_timeout_s: Seconds = 30
    max_timeout_s: Seconds = 86_400
    queue_timeout_s: Seconds = 300
    max_retries: Annotated[int, Field(ge=0)] = 10

    @field_validator("max_timeout_s")
    @classmethod
    def _takes_the_default(cls, max_s: int, info: ValidationInfo) -> int:
        default_s = info.data.get("default_timeout_s")
        if default_s is not None and max_s < default_s:
            raise ValueError(
                f"must be at least tasks.default_timeout_s ({default_s}): a task without"
                " a timeout of its own runs with the default"
            )
        return max_s


class AuthSettings(Section):
    secret_key: SecretStr = SecretStr("")
    secret_key_file: str = ""
    audit_key: SecretStr = SecretStr("")
    audit_key_file: str = ""
    token_ttl_days: Count = 90
    session_ttl_hours: Count = 12
    login_attempts_per_minute: Count = 10


class LoggingSettings(Section):
    level: LogLevel = "INFO"
    format: Literal["console", "json"] = "console"
    file: str = ""
    max_bytes: Count = 10_485_760
    backups: Annotated[int, Field(ge=0)] = 5
    loggers: dict[str, LogLevel] = {
        "pika": "CRITICAL",
        "amqtt": "WARNING",
        "transitions": "WARNING",
        "alembic": "WARNING",
        "httpx": "WARNING",
        "pymodbus": "WARNING",
        "apscheduler": "WARNING",
    }

    @field_validator("level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("loggers", mode="before")
    @classmethod
    def _upper_levels(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: v.upper() if isinstance(v, str) else v for k, v in value.items()}


class EmailSettings(Section):
    enabled: bool = False
    smtp_host: str = ""
    smtp_port: Port = 587
    username: str = ""
    password: SecretStr = SecretStr("")
    password_file: str = ""
    starttls: bool = True
    from_addr: str = ""
    to: list[str] = []
    timeout_s: Seconds = 10
    events: list[NotifyEvent] = []


class WebhookSettings(Section):
    url: str
    secret: SecretStr = SecretStr("")
    secret_file: str = ""
    events: list[NotifyEvent] = []

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if urlsplit(url).scheme not in {"http", "https"}:
            raise ValueError("must be an http:// or https:// URL")
        return url


class SlowRunSettings(Section):
    """When a succeeded run is `slow`: longer than `factor` times the median of its task's
    last `history` succeeded runs, by at least `min_excess_s`, with `min_runs` behind it."""

    factor: Annotated[float, Field(gt=1.0)] = 3.0
    min_runs: Count = 5
    min_excess_s: Annotated[float, Field(ge=0.0)] = 1.0
    history: Annotated[int, Field(ge=1, le=1000)] = 20

    @field_validator("history")
    @classmethod
    def _holds_min_runs(cls, history: int, info: ValidationInfo) -> int:
        min_runs = info.data.get("min_runs")
        if min_runs is not None and history < min_runs:
            raise ValueError(
                f"must be at least notifications.slow.min_runs ({min_runs}): the usual is"
                " the median of at most `history` runs, so no run would ever be slow"
            )
        return history


# Where a webhook may not go: the controller's own host (loopback) and link-local
# addresses (a cloud's metadata service at 169.254.169.254), and "this network".
REFUSED_WEBHOOK_NETWORKS = ["127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10", "0.0.0.0/8"]


class NotificationSettings(Section):
    email: EmailSettings = Field(default_factory=EmailSettings)
    webhooks: list[WebhookSettings] = []
    webhook_timeout_s: Seconds = 10
    webhook_refused_networks: list[str] = Field(
        default_factory=lambda: list(REFUSED_WEBHOOK_NETWORKS)
    )
    slow: SlowRunSettings = Field(default_factory=SlowRunSettings)

    @field_validator("webhook_refused_networks")
    @classmethod
    def _networks(cls, given: list[str]) -> list[str]:
        for index, network in enumerate(given):
            try:
                ip_network(network)
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc} (a network: 10.0.0.0/8, fd00::/8)") from None
        return given

    def refused_networks(self) -> list[IPv4Network | IPv6Network]:
        """`webhook_refused_networks`, parsed."""
        return [ip_network(network) for network in self.webhook_refused_networks]


class ErrorTrackingSettings(Section):
    enabled: bool = False
    dsn: SecretStr = SecretStr("")
    dsn_file: str = ""
    sample_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 1.0


class Settings(Section):
    """Every setting of a TME process; `load_settings` builds it from files and environment."""

    environment: Literal["local", "production"] = "local"
    http: HttpSettings = Field(default_factory=HttpSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    tasks: TaskSettings = Field(default_factory=TaskSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    error_tracking: ErrorTrackingSettings = Field(default_factory=ErrorTrackingSettings)

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def sources(self) -> dict[str, str]:
        """Dotted key -> where its value came from; keys not listed are built-in defaults."""
        return self._sources
