"""The device agent's configuration file (YAML), validated with errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as _PydanticError

from tme.errors import ConfigError
from tme.mqtt import parse_mqtt_url

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"  # site/agent/device names become MQTT topic levels


class MqttSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "mqtt://127.0.0.1:1883"
    username: str | None = None
    password: str | None = None
    protocol: Literal["3.1.1", "5"] = "3.1.1"

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        try:
            parse_mqtt_url(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from exc
        return value


class DeviceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    driver: str
    connection: dict[str, Any] = Field(default_factory=dict)
    unit: int = Field(default=1, ge=0, le=255)
    profile: Path | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site: str = Field(pattern=NAME_PATTERN)
    agent: str = Field(pattern=NAME_PATTERN)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    worker_count: int = Field(default=4, ge=1, le=256)
    state_dir: Path = Path("state")
    allow_shell: bool = False
    devices: dict[str, DeviceConfig] = Field(default_factory=dict)

    @field_validator("mqtt", mode="before")
    @classmethod
    def _url_shorthand(cls, value: Any) -> Any:
        return {"url": value} if isinstance(value, str) else value

    @field_validator("devices")
    @classmethod
    def _device_names(cls, value: dict[str, DeviceConfig]) -> dict[str, DeviceConfig]:
        for name in value:
            if "/" in name or "+" in name or "#" in name or not name:
                raise ValueError(f"device name {name!r} may not contain / + #")
        return value


def parse_agent_config(
    data: Any, source: str = "<config>", base_dir: Path | None = None
) -> AgentConfig:
    """Validate a mapping; relative paths (state_dir, profiles) resolve against base_dir."""
    try:
        config = AgentConfig.model_validate(data)
    except _PydanticError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{source}: {key}: {first['msg']}", key=key, source=source) from exc
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _resolve_paths(config: AgentConfig, base: Path) -> AgentConfig:
    devices = {
        name: device.model_copy(
            update={"profile": base / device.profile}
            if device.profile is not None and not device.profile.is_absolute()
            else {}
        )
        for name, device in config.devices.items()
    }
    state_dir = config.state_dir if config.state_dir.is_absolute() else base / config.state_dir
    return config.model_copy(update={"devices": devices, "state_dir": state_dir})


def load_agent_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read agent config {path}: {exc}", source=str(path)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", source=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level", source=str(path))
    return parse_agent_config(data, source=str(path), base_dir=path.parent)
