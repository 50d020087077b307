"""Logging of every TME process: structlog in front, stdlib logging underneath.

TME's own lines and library lines (pika, uvicorn, apscheduler) pass through the
same processors and renderer, so a log collector sees one format. Lines written
inside `bind_run(...)` carry the run, task, site and agent ids, which is how an
operator follows one run across controller, gateway and agent logs.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

import structlog
from structlog.typing import Processor

from tme.settings_models import LoggingSettings

# Marks the handlers configure_logging installed, so a second call replaces them
# instead of adding duplicates, and handlers installed by others (pytest) stay.
TME_HANDLER = "_tme_handler"


def configure_logging(settings: LoggingSettings, *, stream: IO[str] | None = None) -> None:
    """Route structlog and stdlib logging to standard error (and a rotating file if set).

    Safe to call again: the previous TME handlers are closed and replaced.
    `stream` defaults to sys.stderr at the time of the call.
    """
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached, so a reconfiguration (tests, `tme demo` after parsing options) applies
        # to loggers made earlier at module level.
        cache_logger_on_first_use=False,
    )
    out = stream if stream is not None else sys.stderr
    handlers: list[logging.Handler] = [logging.StreamHandler(out)]
    handlers[0].setFormatter(_formatter(settings.format, shared, colors=_is_tty(out)))
    if settings.file:
        handlers.append(_file_handler(settings, shared))
    root = logging.getLogger()
    reset_logging()
    for handler in handlers:
        setattr(handler, TME_HANDLER, True)
        root.addHandler(handler)
    root.setLevel(settings.level)
    for name, level in settings.loggers.items():
        logging.getLogger(name).setLevel(level)


def reset_logging() -> None:
    """Remove and close the handlers configure_logging installed (tests, shutdown)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, TME_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structured logger; `log.info("event", key=value)`."""
    return cast(structlog.stdlib.BoundLogger, structlog.stdlib.get_logger(name))


@contextmanager
def bind_run(
    *,
    run_id: object = None,
    task_id: object = None,
    site: str | None = None,
    agent: str | None = None,
    **extra: Any,
) -> Iterator[None]:
    """Add the given ids to every log line written in this context (thread or task).

    Ids left as None are not bound; on exit the previous values come back.
    """
    ids = {"run_id": run_id, "task_id": task_id, "site": site, "agent": agent, **extra}
    bound = {key: str(value) for key, value in ids.items() if value is not None}
    with structlog.contextvars.bound_contextvars(**bound):
        yield


def _formatter(
    fmt: str, shared: list[Processor], *, colors: bool
) -> structlog.stdlib.ProcessorFormatter:
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # Tracebacks as data, without local variables: those may hold secrets.
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        tail: list[Processor] = [tracebacks, renderer]
    else:
        exceptions = (
            structlog.dev.RichTracebackFormatter(show_locals=False)
            if colors
            else structlog.dev.plain_traceback
        )
        renderer = structlog.dev.ConsoleRenderer(colors=colors, exception_formatter=exceptions)
        tail = [renderer]
    return structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        foreign_pre_chain=shared,
    )


def _file_handler(settings: LoggingSettings, shared: list[Processor]) -> logging.Handler:
    path = Path(settings.file).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
    )
    handler.setFormatter(_formatter(settings.format, shared, colors=False))
    return handler


def _is_tty(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
