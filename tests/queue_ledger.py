"""The RabbitMQ queues a test session declares, written down so they are deleted after.

Every queue a TME bus declares in this process (tme.bus.amqp.AmqpBus.declare_queue: a
site's queue, an events queue, a dead-letter tap) is recorded, in memory and in a ledger
file of the session's own under LEDGER_DIR. A test's queues are deleted after the test
(those still consumed stay for the session's end), the rest at the session's end. A
session that dies first (killed, a CI timeout) leaves its ledger behind, unlocked: the
next session deletes the queues it names that nobody consumes.

Only what the ledger names is ever deleted: the names themselves (tme.site.site-1a2b...)
look like a real site's, so no sweep by name pattern could tell a test's queue from a
deployment's, or from one of another session still running. TME's own default queues
(KEPT) are never recorded, whoever declared them. Queues declared by child processes
(a gateway run as `python -m ...`) are not seen here; those tests delete them themselves.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from tme.bus.topology import CONTROLLER_EVENTS_QUEUE, DEAD_LETTER_QUEUE

LEDGER_DIR = Path(tempfile.gettempdir()) / f"tme-test-queues-{os.getuid()}"
SUFFIX = ".queues"
# The queues TME declares by default: shared by every session and by a controller this
# machine may run, so no test session deletes them.
KEPT = frozenset({CONTROLLER_EVENTS_QUEUE, DEAD_LETTER_QUEUE})

Name = tuple[str, str]  # (vhost, queue)
NOT_FOUND = 404


class QueueLedger:
    """The queues this session declared and has not deleted yet, on the broker of
    `admin_url` (whose user may delete them in any vhost they were declared in)."""

    def __init__(self, admin_url: str, directory: Path = LEDGER_DIR) -> None:
        self.admin_url = admin_url
        self.directory = directory
        self.path = directory / f"{os.getpid()}-{secrets.token_hex(6)}{SUFFIX}"
        self._lock = threading.Lock()
        self._declared: list[Name] = []  # in order, for what one test declared
        self._live: set[Name] = set()
        self._file: IO[str] | None = None
        self._unwritable = False

    # --- recording --------------------------------------------------------------

    def record(self, url: str, queue: str) -> None:
        """Note a queue declared (or about to be) through `url`."""
        if queue in KEPT:
            return
        name = (vhost_of(url), queue)
        with self._lock:
            if name in self._live:
                return
            self._live.add(name)
            self._declared.append(name)
            self._write("+", name)

    def forget(self, url: str, queue: str) -> None:
        """Note a queue deleted."""
        self._forget((vhost_of(url), queue))

    def _forget(self, name: Name) -> None:
        with self._lock:
            if name in self._live:
                self._live.discard(name)
                self._write("-", name)

    def mark(self) -> int:
        return len(self._declared)

    def declared_since(self, mark: int) -> set[Name]:
        """The queues declared after `mark` and not deleted since."""
        with self._lock:
            return {name for name in self._declared[mark:] if name in self._live}

    def live(self) -> set[Name]:
        with self._lock:
            return set(self._live)

    def _write(self, sign: str, name: Name) -> None:
        """Add a line to the ledger file, made (and locked) with the first one. A file that
        cannot be written leaves the names in memory only: the session still deletes
        them, a killed one's are not swept."""
        if self._file is None and not self._unwritable:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
                fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new file: free
                self._file.write(f"broker\t{broker_of(self.admin_url)}\n")
            except OSError:
                self._unwritable = True
        if self._file is not None:
            with suppress(OSError):
                self._file.write(f"{sign}\t{name[0]}\t{name[1]}\n")
                self._file.flush()  # on disk should the session be killed

    # --- deleting ---------------------------------------------------------------

    def delete(self, names: Iterable[Name], *, idle_only: bool) -> set[Name]:
        """Delete `names` (all of them, or only those nobody consumes); the ones kept."""
        names = set(names)
        kept = delete_queues(self.admin_url, names, idle_only=idle_only)
        for name in names - kept:
            self._forget(name)
        return kept

    def close(self) -> None:
        """Delete what is left; the ledger goes too, unless the broker kept some."""
        kept = self.delete(self.live(), idle_only=False) if self._live else set()
        if self._file is not None:
            if not kept:
                self.path.unlink(missing_ok=True)
            self._file.close()  # unlocked: the next session sweeps what is left
            self._file = None

    def abandon(self) -> None:
        """Let go of the ledger as a killed session would: file left, lock released."""
        if self._file is not None:
            self._file.close()
            self._file = None

    # --- recording a process's buses --------------------------------------------

    @contextmanager
    def recording(self) -> Iterator[QueueLedger]:
        """Record the queues every AmqpBus of this process declares and deletes while the
        block runs. tme.bus.amqp (pika and all) is imported only when a bus is opened."""
        from tme.bus import registry

        global _ACTIVE
        saved, outer = dict(registry.TRANSPORTS), _ACTIVE
        _ACTIVE = self
        for scheme in ("amqp", "amqps"):
            registry.TRANSPORTS[scheme] = f"{__name__}:recorded_amqp_bus"
        try:
            yield self
        finally:
            registry.TRANSPORTS.update(saved)
            _ACTIVE = outer


_ACTIVE: QueueLedger | None = None
_patched = False


def recorded_amqp_bus(url: str, options: Any) -> Any:
    """open_bus's factory for amqp:// while a ledger records: tme.bus.amqp's AmqpBus, its
    declare_queue and delete_queue telling the ledger."""
    global _patched
    from tme.bus.amqp import AmqpBus

    if not _patched:
        declare, delete = AmqpBus.declare_queue, AmqpBus.delete_queue

        def declare_queue(bus: AmqpBus, queue: str, exchange: str, binding: str) -> None:
            if _ACTIVE is not None:
                _ACTIVE.record(bus.url, queue)  # first: a failed bind leaves the queue
            declare(bus, queue, exchange, binding)

        def delete_queue(bus: AmqpBus, queue: str) -> None:
            delete(bus, queue)
            if _ACTIVE is not None:
                _ACTIVE.forget(bus.url, queue)

        AmqpBus.declare_queue = declare_queue  # type: ignore[method-assign]
        AmqpBus.delete_queue = delete_queue  # type: ignore[method-assign]
        _patched = True
    return AmqpBus(url, options)


# --- the broker's side ------------------------------------------------------------


def broker_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (5671 if parts.scheme == 'amqps' else 5672)}"


def vhost_of(url: str) -> str:
    """The vhost an amqp:// URL names, as pika reads it ("/" when it names none)."""
    path = urlsplit(url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def url_with_vhost(url: str, vhost: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + quote(vhost, safe="")))


def delete_queues(admin_url: str, names: Iterable[Name], *, idle_only: bool) -> set[Name]:
    """Delete `names` on the broker of `admin_url`; those kept: consumed (with
    `idle_only`), or on a broker that cannot be reached. A vhost that is gone (or that
    the admin may not enter) has nothing left to delete. A quorum queue refuses
    queue.delete's if-unused, hence the passive declare's consumer count first."""
    import pika
    import pika.exceptions

    by_vhost: dict[str, list[str]] = {}
    for vhost, queue in names:
        by_vhost.setdefault(vhost, []).append(queue)
    kept: set[Name] = set()
    for vhost, queues in by_vhost.items():
        parameters = pika.URLParameters(url_with_vhost(admin_url, vhost))
        parameters.connection_attempts = 1
        parameters.socket_timeout = parameters.stack_timeout = 5  # one that does not answer
        try:
            connection = pika.BlockingConnection(parameters)
        except pika.exceptions.ProbableAccessDeniedError:  # 530: no such vhost (any more)
            continue
        except (pika.exceptions.AMQPError, OSError):
            kept |= {(vhost, queue) for queue in queues}
            continue
        try:
            kept |= {(vhost, queue) for queue in _delete_on(connection, queues, idle_only)}
        finally:
            with suppress(pika.exceptions.AMQPError):
                connection.close()
    return kept


def _delete_on(connection: Any, queues: list[str], idle_only: bool) -> list[str]:
    """Delete `queues` on `connection`; those kept (consumed, refused, or not reached
    before the connection was lost). A 404 is a queue gone already."""
    import pika.exceptions

    kept: list[str] = []
    channel = None
    for index, queue in enumerate(queues):
        try:
            if channel is None or not channel.is_open:  # a refusal closes the channel
                channel = connection.channel()
            if idle_only and channel.queue_declare(queue, passive=True).method.consumer_count:
                kept.append(queue)
                continue
            channel.queue_delete(queue)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != NOT_FOUND:
                kept.append(queue)
        except pika.exceptions.AMQPConnectionError:
            return kept + queues[index:]
    return kept


def sweep(admin_url: str, directory: Path = LEDGER_DIR) -> set[Name]:
    """Delete the idle queues of the ledgers no session holds (theirs died), on the
    broker of `admin_url`; a ledger whose queues are all gone goes too. The queues kept
    (still consumed, or the broker unreachable)."""
    kept: set[Name] = set()
    if not directory.is_dir():
        return kept
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        with suppress(OSError), path.open("r+", encoding="utf-8") as ledger:  # gone, not ours
            try:
                fcntl.flock(ledger, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its session runs
            broker, names = _read(ledger)
            if broker != broker_of(admin_url):
                continue
            left = delete_queues(admin_url, names, idle_only=True)
            if left:
                ledger.seek(0)
                ledger.truncate()
                ledger.write(f"broker\t{broker}\n")
                ledger.writelines(f"+\t{vhost}\t{queue}\n" for vhost, queue in sorted(left))
                kept |= left
            else:
                path.unlink(missing_ok=True)
    return kept


def _read(ledger: IO[str]) -> tuple[str, set[Name]]:
    broker, live = "", set[Name]()
    for line in ledger.read().splitlines():
        fields = line.split("\t")
        if fields[0] == "broker" and len(fields) == 2:
            broker = fields[1]
        elif len(fields) == 3 and fields[2] not in KEPT:
            name = (fields[1], fields[2])
            if fields[0] == "+":
                live.add(name)
            elif fields[0] == "-":
                live.discard(name)
    return broker, live
