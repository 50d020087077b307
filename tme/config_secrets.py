"""Secrets of the settings: read from `<name>_file` settings, refused when weak in production.

A secret given as a file (a mounted container secret) keeps it out of the
environment and of the YAML files. Production refuses empty and well-known
default secrets because a controller reachable from a site network with the
broker's "guest" password or an empty signing key is open to anyone there.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, SecretStr

from tme.config_errors import source_of, where
from tme.errors import ConfigError
from tme.settings_models import Settings

# Placeholders people paste from examples; refused in production like empty keys.
PLACEHOLDER_SECRETS = {"changeme", "change-me", "changethis", "secret", "password", "guest"}
MIN_SECRET_KEY_LENGTH = 16


def _models(model: BaseModel, prefix: str) -> Iterator[tuple[str, BaseModel]]:
    yield prefix, model
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _models(value, f"{prefix}{name}.")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _models(item, f"{prefix}{name}.{index}.")


def read_secret_files(settings: Settings, sources: dict[str, str]) -> None:
    """Replace each secret whose `<name>_file` is set by the stripped content of that file."""
    for prefix, model in _models(settings, ""):
        fields = type(model).model_fields
        for secret, field in fields.items():
            path = getattr(model, secret + "_file", "")
            if field.annotation is not SecretStr or not path:
                continue
            key = f"{prefix}{secret}_file"
            setattr(model, secret, SecretStr(_read_secret(key, path, source_of(key, sources))))
            sources[prefix + secret] = f"file ({path})"


def _read_secret(key: str, path: str, source: str) -> str:
    try:
        content = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        message = f'{key}: cannot read secret file "{path}" ({reason}) (from {where(source)})'
        raise ConfigError(message, key=key, source=source) from None
    if not content:
        message = f'{key}: secret file "{path}" is empty (from {where(source)})'
        raise ConfigError(message, key=key, source=source)
    return content


def refuse_weak_secrets(settings: Settings) -> None:
    if settings.environment != "production":
        return
    problems = _weak_secrets(settings)
    if problems:
        first = problems[0].split(" ", 1)[0]
        raise ConfigError(
            "production mode refuses empty or default secrets: " + ", ".join(problems),
            key=first,
            source=settings.sources.get(first, "default"),
        )


def _weak_secrets(s: Settings) -> list[str]:
    problems: list[str] = []
    key = s.auth.secret_key.get_secret_value()
    if not key:
        problems.append("auth.secret_key (empty)")
    elif key.lower() in PLACEHOLDER_SECRETS or len(key) < MIN_SECRET_KEY_LENGTH:
        problems.append(f"auth.secret_key (a placeholder or under {MIN_SECRET_KEY_LENGTH} chars)")
    audit = s.auth.audit_key.get_secret_value()
    if not audit:
        problems.append("auth.audit_key (empty)")
    elif audit.lower() in PLACEHOLDER_SECRETS or len(audit) < MIN_SECRET_KEY_LENGTH:
        problems.append(f"auth.audit_key (a placeholder or under {MIN_SECRET_KEY_LENGTH} chars)")
    broker_url = urlsplit(s.broker.effective_url)  # a URL's user gets broker.password
    if broker_url.scheme != "memory":
        password = broker_url.password
        if not password or unquote(password) == "guest":
            problems.append('broker.password (empty or the default "guest")')
    if s.mqtt.username and not s.mqtt.password.get_secret_value():
        problems.append("mqtt.password (empty while mqtt.username is set)")
    email = s.notifications.email
    if email.enabled and email.username and not email.password.get_secret_value():
        problems.append("notifications.email.password (empty while username is set)")
    for index, hook in enumerate(s.notifications.webhooks):
        if not hook.secret.get_secret_value():
            problems.append(f"notifications.webhooks.{index}.secret (empty: payloads are signed)")
    if s.error_tracking.enabled and not s.error_tracking.dsn.get_secret_value():
        problems.append("error_tracking.dsn (empty while error tracking is enabled)")
    return problems
