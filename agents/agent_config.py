"""The device agent's configuration file (YAML), validated with errors that name the key."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from tme import yaml_load
from tme.agents.command_record import KEEP_FINAL_S
from tme.drivers.fields import Fields, Problems, join
from tme.errors import ConfigError, yaml_problem
from tme.mqtt import TlsFiles, parse_mqtt_url
from tme.topics import name_problem

MQTT_PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True)
class MqttSettings:
    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    # mqtts:// only: the CA bundle that signed the broker's certificate (None: the
    # system's), and this agent's own certificate and key for a broker that asks.
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def tls(self) -> TlsFiles:
        files = (self.ca_file, self.cert_file, self.key_file)
        return TlsFiles(*(str(path) if path is not None else None for path in files))


Condition = Literal["below", "above", "equals"]
CONDITIONS: tuple[Condition, ...] = ("below", "above", "equals")


@dataclass(frozen=True)
class InterlockConfig:
    """A change to a device that is allowed only while a point (of this device or another
    on the agent) is below, above or equal to a limit; read just before each such change.
    It guards writes of `point`, or runs of serial command `command`, or with neither
    every change to the device."""

    requires_point: str
    condition: Condition
    limit: float | bool
    requires_device: str | None = None  # None: the guarded device itself
    point: str | None = None
    command: str | None = None
    why: str = ""


@dataclass(frozen=True)
class DeviceConfig:
    driver: str
    connection: dict[str, Any] = field(default_factory=dict)
    unit: int = 1
    profile: Path | None = None
    interlocks: tuple[InterlockConfig, ...] = ()
    # Stop the device (its safe values, latched) after this long without the link to the
    # controller (tme.agents.link_watch); None: never on link loss.
    stop_on_link_loss_s: float | None = None


@dataclass(frozen=True)
class ErrorTracking:
    """Report unhandled errors to a Sentry-compatible service (needs the `errors` extra)."""

    enabled: bool = False
    dsn: str = field(default="", repr=False)
    sample_rate: float = 1.0


@dataclass(frozen=True)
class AgentConfig:
    site: str
    agent: str
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    # The site's gateways by name (`gateway: gw1` or `gateway: [gw1, gw2]`): their
    # presence says whether they take packed events and whether they reach RabbitMQ.
    gateways: tuple[str, ...] = ("gateway",)
    worker_count: int = 4
    state_dir: Path = Path("state")
    # How long a final command stays in the record after its answer (command_record.py):
    # longer only serves a look at what the agent did; a command never runs twice.
    record_keep_s: float = KEEP_FINAL_S
    allow_shell: bool = False
    devices: dict[str, DeviceConfig] = field(default_factory=dict)
    error_tracking: ErrorTracking = field(default_factory=ErrorTracking)


def parse_agent_config(
    data: Any, source: str = "<config>", base_dir: Path | None = None
) -> AgentConfig:
    """Validate a mapping; relative paths (state_dir, profiles) resolve against base_dir.

    Every problem is named by its key; the error's `key` is the first one.
    """
    problems = Problems()
    config = _agent(Fields(data, "", problems))
    if problems:
        raise ConfigError(f"{source}: {problems.text()}", key=problems.first_key, source=source)
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _agent(fields: Fields) -> AgentConfig:
    config = AgentConfig(
        site=_name(fields, "site"),
        agent=_name(fields, "agent"),
        mqtt=_mqtt(fields),
        gateways=_gateways(fields),
        worker_count=fields.integer("worker_count", 4, low=1, high=256),
        state_dir=fields.path("state_dir", "state"),
        record_keep_s=_record_keep(fields),
        allow_shell=fields.flag("allow_shell", False),
        devices={
            str(name): _device(Fields(device, join("devices", str(name)), fields.problems))
            for name, device in _device_names(fields).items()
        },
        error_tracking=_error_tracking(fields),
    )
    fields.done()
    return config


MAX_RECORD_KEEP_S = 366 * 24 * 3600


def _record_keep(fields: Fields) -> float:
    keep = fields.number("record_keep_s", KEEP_FINAL_S)
    if isinstance(keep, float) and not 0 <= keep <= MAX_RECORD_KEEP_S:
        fields.problems.add(
            "record_keep_s", f"must be between 0 and {MAX_RECORD_KEEP_S} seconds, got {keep:g}"
        )
        return KEEP_FINAL_S
    return float(keep)


def _name(fields: Fields, key: str, default: str | None = None) -> str:
    """A site, agent or gateway name: one the API takes in a task's target."""
    name = fields.text(key, default) if default is not None else fields.text(key)
    problem = name_problem(name) if isinstance(name, str) else None
    if problem is not None:
        fields.problems.add(key, problem)
    return name


MAX_GATEWAYS = 8


def _gateways(fields: Fields) -> tuple[str, ...]:
    """`gateway`: one name, or a list of the site's gateways (a second for redundancy)."""
    value = fields.raw("gateway")
    if value is None or isinstance(value, str):
        return (_name(fields, "gateway", "gateway"),)
    if not isinstance(value, list) or not value or len(value) > MAX_GATEWAYS:
        fields.problems.add(
            "gateway", f"expected a gateway's name or a list of 1 to {MAX_GATEWAYS} names"
        )
        return ("gateway",)
    names = []
    for i, name in enumerate(value):
        problem = name_problem(name) if isinstance(name, str) else "a gateway's name is text"
        if problem is not None:
            fields.problems.add(f"gateway.{i}", problem)
        names.append(str(name))
    if len(set(names)) != len(names):
        fields.problems.add("gateway", f"a gateway named twice: {names}")
    return tuple(names)


def _error_tracking(parent: Fields) -> ErrorTracking:
    if parent.raw("error_tracking") is None:
        return ErrorTracking()
    fields = Fields(parent.mapping("error_tracking"), "error_tracking", parent.problems)
    tracking = ErrorTracking(
        enabled=fields.flag("enabled", False),
        dsn=fields.text("dsn", ""),
        sample_rate=fields.number("sample_rate", 1.0),
    )
    if not 0.0 <= tracking.sample_rate <= 1.0:
        fields.problems.add("error_tracking.sample_rate", "must be between 0.0 and 1.0")
    if tracking.enabled and not tracking.dsn:
        fields.problems.add("error_tracking.dsn", "is needed when error tracking is enabled")
    fields.done()
    return tracking


def _mqtt(parent: Fields) -> MqttSettings:
    value = parent.raw("mqtt")
    if value is None:
        return MqttSettings()
    if isinstance(value, str):  # the shorthand `mqtt: mqtt://host:1883`
        value = {"url": value}
    if isinstance(value, dict) and type(value.get("protocol")) is int:
        value = {**value, "protocol": str(value["protocol"])}  # YAML reads `5` as a number
    fields = Fields(value, "mqtt", parent.problems)
    url = fields.text("url", MqttSettings.url)
    try:
        parse_mqtt_url(url)
    except ConfigError as exc:
        fields.problems.add("mqtt.url", exc.message)
    settings = MqttSettings(
        url=url,
        username=fields.text("username", None, optional=True),
        password=fields.text("password", None, optional=True),
        protocol=fields.text("protocol", "3.1.1", choices=MQTT_PROTOCOLS),
        ca_file=fields.path("ca_file", None, optional=True),
        cert_file=fields.path("cert_file", None, optional=True),
        key_file=fields.path("key_file", None, optional=True),
    )
    if settings.tls().given() and not url.startswith("mqtts://"):
        fields.problems.add("mqtt.url", "ca_file, cert_file and key_file need an mqtts:// URL")
    fields.done()
    return settings


def _device_names(fields: Fields) -> dict[str, Any]:
    devices = fields.mapping("devices")
    for name in devices:
        problem = name_problem(name) if isinstance(name, str) else "a device name is text"
        if problem is not None:
            fields.problems.add(join("devices", str(name)), problem)
    return devices


def _device(fields: Fields) -> DeviceConfig:
    device = DeviceConfig(
        driver=fields.text("driver"),
        connection=fields.mapping("connection"),
        unit=fields.integer("unit", 1, low=0, high=255),
        profile=fields.path("profile", None, optional=True),
        interlocks=tuple(
            _interlock(Fields(item, join(fields.key, f"interlocks.{i}"), fields.problems))
            for i, item in enumerate(fields.sequence("interlocks"))
        ),
        stop_on_link_loss_s=fields.number("stop_on_link_loss_s", None, optional=True),
    )
    after_s = device.stop_on_link_loss_s
    if after_s is not None and after_s <= 0:
        key = join(fields.key, "stop_on_link_loss_s")
        fields.problems.add(key, f"must be more than 0 seconds, got {after_s:g}")
    fields.done()
    return device


def _interlock(fields: Fields) -> InterlockConfig:
    """What the YAML says; build_devices checks the names against the profiles."""
    point = fields.text("point", None, optional=True)
    command = fields.text("command", None, optional=True)
    if point is not None and command is not None:
        fields.problems.add(fields.key, "give point or command, not both")
    requires = Fields(fields.mapping("requires"), join(fields.key, "requires"), fields.problems)
    if "requires" not in fields.data:
        fields.problems.add(join(fields.key, "requires"), "field required")
    given = [c for c in CONDITIONS if c in requires.data]
    if len(given) != 1:
        fields.problems.add(requires.key, "give exactly one of below, above, equals")
    condition: Condition = given[0] if given else "equals"
    limit = requires.raw(condition) if condition == "equals" else requires.number(condition, 0.0)
    if condition == "equals" and not _is_limit(limit):
        fields.problems.add(join(requires.key, "equals"), "expected a number or true/false")
    interlock = InterlockConfig(
        requires_point=requires.text("point"),
        condition=condition,
        limit=limit if _is_limit(limit) else 0.0,
        requires_device=requires.text("device", None, optional=True),
        point=point,
        command=command,
        why=fields.text("why", ""),
    )
    for other in CONDITIONS:
        requires.raw(other)  # one of them too many is said above, not as unknown
    requires.done()
    fields.done()
    return interlock


def _is_limit(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, int | float) and math.isfinite(value)


def _resolve_paths(config: AgentConfig, base: Path) -> AgentConfig:
    devices = {
        name: dataclasses.replace(device, profile=base / device.profile)
        if device.profile is not None and not device.profile.is_absolute()
        else device
        for name, device in config.devices.items()
    }
    state_dir = config.state_dir if config.state_dir.is_absolute() else base / config.state_dir
    mqtt = dataclasses.replace(
        config.mqtt,
        **{
            name: base / path
            for name in ("ca_file", "cert_file", "key_file")
            if (path := getattr(config.mqtt, name)) is not None and not path.is_absolute()
        },
    )
    return dataclasses.replace(config, devices=devices, state_dir=state_dir, mqtt=mqtt)


# agent.worker_count's variables, the first one set wins (as in the settings' precedence)
WORKER_COUNT_VARIABLES = ("TME_AGENT__WORKER_COUNT", "WORKER_COUNT")


def load_agent_config(path: str | Path, environ: Mapping[str, str] | None = None) -> AgentConfig:
    """The agent config in `path`. Given `environ` (a running agent's environment), its
    TME_AGENT__WORKER_COUNT, else WORKER_COUNT, overrides the file's worker_count, as the
    settings' variables override their files; the file's other keys stand."""
    config = _load_agent_file(Path(path))
    for name in WORKER_COUNT_VARIABLES:
        if environ is not None and name in environ:
            given = environ[name].strip()
            if not (given.isascii() and given.isdigit() and 1 <= int(given) <= 256):
                raise ConfigError(
                    f"worker_count: must be an integer between 1 and 256 (got {given!r} from"
                    f" env {name})",
                    key="worker_count",
                    source=f"env {name}",
                )
            return dataclasses.replace(config, worker_count=int(given))
    return config


def _load_agent_file(path: Path) -> AgentConfig:
    try:
        data = yaml_load.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML {yaml_problem(exc)}", source=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level", source=str(path))
    return parse_agent_config(data, source=str(path), base_dir=path.parent)


def track_errors(config: AgentConfig) -> bool:
    """Log unhandled errors of the agent process and, when configured, report them."""
    from tme.error_tracking import install

    tracking = config.error_tracking
    return install(
        f"agent {config.site}/{config.agent}",
        enabled=tracking.enabled,
        dsn=tracking.dsn,
        sample_rate=tracking.sample_rate,
        integrations=False,
    )
