"""Whether this controller can do its work now: what GET /readyz answers.

Each check raises NotReady with a short reason, or any other error, when its
dependency cannot serve: the database does not answer or takes no writes (a
PostgreSQL standby, or a server set read-only), its schema is not the one this
controller was built for (a newer TME upgraded it under a running one), or the broker
does not answer. /readyz is asked without credentials (a load balancer, Kubernetes,
systemd), so its answer names each check and a short reason only; the error itself
(which may name hosts, users or paths) goes to the log, once when a check starts
failing, then a line a minute while it fails, and once when it passes again.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from tme.controller.store.db import current_revision, head_revision
from tme.errors import BusError
from tme.failure_log import FailureLog

log = logging.getLogger("tme.readiness")

ReadinessCheck = Callable[[], None]  # raises when its dependency cannot serve


class NotReady(Exception):
    """A check's dependency answers, but cannot serve: `reason` is safe to show anyone."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Readiness:
    def __init__(self) -> None:
        self.checks: dict[str, ReadinessCheck] = {}
        self._failures: dict[str, FailureLog] = {}
        self._lock = threading.Lock()  # probes run on several worker threads at once

    def add(self, name: str, check: ReadinessCheck) -> None:
        self.checks[name] = check
        self._failures[name] = FailureLog(log, f"readiness check {name}")

    def run(self) -> dict[str, str]:
        """Each check's answer: "ok", or "failing: <short reason>"."""
        results: dict[str, str] = {}
        for name, check in self.checks.items():
            try:
                check()
            except Exception as exc:  # any failure means not ready; the log says why
                results[name] = f"failing: {_public_reason(exc)}"
                with self._lock:
                    self._failures[name].failed(exc)
            else:
                results[name] = "ok"
                with self._lock:
                    self._failures[name].passed()
        return results


def _public_reason(error: Exception) -> str:
    if isinstance(error, NotReady):
        return error.reason
    if isinstance(error, DBAPIError | BusError):
        return "unreachable"
    return "error"


def check_database(engine: Engine) -> None:
    """The database answers and takes writes."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        if engine.dialect.name == "postgresql" and _read_only(connection):
            raise NotReady("read-only (a standby, or default_transaction_read_only is on)")


def _read_only(connection: Connection) -> bool:
    """On a hot standby, and on a server or database set read-only, a transaction is
    read-only from its start: every write of the controller would fail."""
    return connection.execute(text("SHOW transaction_read_only")).scalar() == "on"


def schema_check(engine: Callable[[], Engine]) -> ReadinessCheck:
    """The database's schema is the one this controller was built for (checked at start
    too; a `tme db upgrade` of a newer release can move it under a running controller).
    The newest revision is read from the migrations once, here."""
    return functools.partial(_check_schema, engine, head_revision())


def _check_schema(engine: Callable[[], Engine], head: str) -> None:
    current = current_revision(engine())
    if current != head:
        raise NotReady(f"schema at revision {current}, this controller needs {head}")
