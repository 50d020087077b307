"""Unhandled errors of any TME process: logged with context, and reported to a
Sentry-compatible service when `error_tracking.enabled` and a DSN are set (the
optional `errors` extra installs sentry-sdk)."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType
from typing import Any

log = logging.getLogger("tme.errors")

_installed: dict[str, bool] = {}


def _log_unhandled(
    process: str, kind: type[BaseException], error: BaseException, tb: TracebackType | None
) -> None:
    thread = threading.current_thread().name
    log.critical(
        "unhandled %s in %s (thread %s)",
        kind.__name__,
        process,
        thread,
        exc_info=(kind, error, tb),
    )


def install_error_tracking(settings: Any, *, process: str) -> bool:
    """Hook unhandled errors once per process; True when a tracking service is on."""
    tracking = settings.error_tracking
    return install(
        process,
        enabled=tracking.enabled,
        dsn=tracking.dsn.get_secret_value(),
        sample_rate=tracking.sample_rate,
        environment=settings.environment,
    )


def install(
    process: str,
    *,
    enabled: bool = False,
    dsn: str = "",
    sample_rate: float = 1.0,
    environment: str = "local",
    integrations: bool = True,
) -> bool:
    """The same for a process without TME settings (the device agent has its own file).

    `integrations=False` keeps sentry-sdk from loading the web frameworks it finds
    installed (FastAPI, pydantic...), which a device agent never uses."""
    if not _installed.get("hooks"):
        previous = sys.excepthook

        def excepthook(kind: Any, error: Any, tb: Any) -> None:
            _log_unhandled(process, kind, error, tb)
            previous(kind, error, tb)

        def thread_hook(args: threading.ExceptHookArgs) -> None:
            if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
                _log_unhandled(process, args.exc_type, args.exc_value, args.exc_traceback)

        sys.excepthook = excepthook
        threading.excepthook = thread_hook
        _installed["hooks"] = True
    if not enabled or not dsn or _installed.get("sentry"):
        return bool(_installed.get("sentry"))
    try:
        import sentry_sdk
    except ImportError:
        log.warning(
            "error_tracking is enabled but sentry-sdk is missing: pip install 'tme[errors]'"
        )
        return False
    sentry_sdk.init(
        dsn=dsn,
        sample_rate=sample_rate,
        environment=environment,
        server_name=process,
        auto_enabling_integrations=integrations,
    )
    _installed["sentry"] = True
    return True
