"""Load the settings of a TME process: default.yaml < override.yaml < environment.

Every layer is merged into one mapping while remembering where each leaf came
from, so a bad value is reported with its dotted key and its file or variable,
and `tme config show` can say why a setting has the value it has.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel, SecretStr

from tme import yaml_load
from tme.config_errors import (
    PASSWORD_IN_URL,
    EnvTexts,
    describe_validation_error,
    field_at,
    source_of,
)
from tme.config_secrets import read_secret_files, refuse_weak_secrets
from tme.errors import ConfigError, yaml_problem
from tme.settings_models import Settings

__all__ = ["ConfigError", "Settings", "effective_items", "load_settings"]

DEFAULT_FILE = "default.yaml"
OVERRIDE_FILE = "override.yaml"
# The seed read this plain variable; kept as a lower-precedence alias.
WORKER_COUNT_ALIAS = "WORKER_COUNT"

Sources = dict[str, str]


def load_settings(
    config_dir: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read, merge and validate every layer; raise ConfigError naming key and source."""
    env = os.environ if environ is None else environ
    # The built-in defaults are the lowest layer, so a partial mapping in a file or variable
    # (logging.loggers) merges into the default one instead of replacing it.
    data: dict[str, Any] = Settings().model_dump()
    sources: Sources = {}
    folder = _config_folder(config_dir, env)
    if folder is not None:
        for name, label in ((DEFAULT_FILE, "default.yaml"), (OVERRIDE_FILE, "override")):
            path = folder / name
            if path.is_file():
                _merge(data, _read_yaml(path), f"{label} ({path})", sources)
    env_texts = _merge_env(data, env, sources)
    try:
        settings = Settings.model_validate(data)
    except pydantic.ValidationError as exc:
        raise describe_validation_error(exc, sources, env_texts) from None
    read_secret_files(settings, sources)
    settings._sources = {key: source_of(key, sources) for key, _ in _leaves(settings, "")}
    refuse_weak_secrets(settings)
    return settings


def effective_items(settings: Settings) -> list[tuple[str, str, str]]:
    """(dotted key, value with secrets masked, source) for every setting, in model order."""
    return [
        (key, _show(value), settings.sources.get(key) or source_of(key, settings.sources))
        for key, value in _leaves(settings, "")
    ]


# --- layers -------------------------------------------------------------------


def _config_folder(
    config_dir: str | os.PathLike[str] | None, env: Mapping[str, str]
) -> Path | None:
    if config_dir is None and env.get("TME_CONFIG_DIR"):
        config_dir, origin = env["TME_CONFIG_DIR"], "env TME_CONFIG_DIR"
    else:
        origin = "config_dir"
    if config_dir is None:
        local = Path("configs")
        return local.resolve() if local.is_dir() else None
    folder = Path(config_dir).expanduser().resolve()
    if not folder.is_dir():
        raise ConfigError(f"config folder {folder} does not exist (from {origin})", source=origin)
    return folder


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml_load.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML {yaml_problem(exc)}", source=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", source=str(path)) from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        kind = type(loaded).__name__
        raise ConfigError(
            f"{path}: the top level must be a mapping of sections, not a {kind}", source=str(path)
        )
    return loaded


def _merge_env(data: dict[str, Any], env: Mapping[str, str], sources: Sources) -> EnvTexts:
    """Merge each setting variable as its own layer; answer each one's text as typed."""
    texts: dict[str, tuple[str, str]] = {}
    for path, name in _env_settings(env):
        layer: dict[str, Any] = {path[-1]: _parse_env_value(env[name], path)}
        for part in reversed(path[:-1]):
            layer = {part: layer}
        _merge(data, layer, f"env {name}", sources)
        texts[".".join(path)] = (f"env {name}", env[name])
    return texts


def _env_settings(env: Mapping[str, str]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(setting path, variable name) of each setting variable, the WORKER_COUNT alias first
    so TME_ variables win."""
    if WORKER_COUNT_ALIAS in env:
        yield ("agent", "worker_count"), WORKER_COUNT_ALIAS
    for name in sorted(env):
        if not name.startswith("TME_") or not ("__" in name or name == "TME_ENVIRONMENT"):
            _refuse_single_underscores(name)
            continue  # TME_URL, TME_TOKEN, TME_CONFIG_DIR, ... are not settings
        path = tuple(part.lower() for part in name[4:].split("__"))
        if not all(path):
            raise ConfigError(f"env {name}: empty part in the setting name", source=f"env {name}")
        yield path, name


def _refuse_single_underscores(name: str) -> None:
    """TME_HTTP_PORT names http.port with one underscore where two belong: refused, since
    it would be silently left unread and the operator would not know why."""
    if not name.startswith("TME_"):
        return
    path = _setting_path(name[4:].lower().split("_"))
    if path is not None and len(path) > 1:
        meant = "TME_" + "__".join(path).upper()
        raise ConfigError(
            f"env {name} is not read: a setting's variable separates its section and key "
            f"with two underscores, {meant} ({'.'.join(path)})",
            source=f"env {name}",
        )


def _setting_path(words: list[str], prefix: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The setting whose dotted key, spelled with underscores, is `words`, or None."""
    if not words:
        return prefix if prefix else None
    for end in range(1, len(words) + 1):
        path = (*prefix, "_".join(words[:end]))
        if field_at(path)[0] is not None:
            found = _setting_path(words[end:], path)
            if found is not None:
                return found
    return None


def _parse_env_value(raw: str, path: tuple[str, ...]) -> Any:
    """Text settings take the variable as is; others read it as a YAML scalar or flow list."""
    annotation = field_at(path)[0]
    if annotation in (str, SecretStr):
        return raw
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _merge(
    base: dict[str, Any], layer: Mapping[Any, Any], source: str, sources: Sources, prefix: str = ""
) -> None:
    """Deep-merge `layer` into `base`: mappings merge key by key, anything else replaces."""
    for raw_key, value in layer.items():
        key = str(raw_key)
        dotted = prefix + key
        if isinstance(value, dict) and value and isinstance(base.get(key), dict):
            _merge(base[key], value, source, sources, dotted + ".")
            continue
        for old in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
            del sources[old]
        base[key] = copy.deepcopy(value)
        _record(value, dotted, source, sources)


def _record(value: Any, dotted: str, source: str, sources: Sources) -> None:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            _record(inner, f"{dotted}.{key}", source, sources)
    else:
        sources[dotted] = source


# --- showing ------------------------------------------------------------------


def _leaves(value: Any, key: str) -> Iterator[tuple[str, Any]]:
    """Every leaf setting; lists of sub-settings (webhooks) and mappings are expanded."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _leaves(getattr(value, name), _join(key, name))
    elif isinstance(value, list) and value and all(isinstance(i, BaseModel) for i in value):
        for index, item in enumerate(value):
            yield from _leaves(item, _join(key, str(index)))
    elif isinstance(value, dict) and value:
        for name, inner in value.items():
            yield from _leaves(inner, _join(key, str(name)))
    else:
        yield key, value


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "****" if value.get_secret_value() else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    # a password given inside a URL (broker.url, mqtt.url, database.url) is a secret too
    return "" if value is None else PASSWORD_IN_URL.sub(r"\1****@", str(value))
