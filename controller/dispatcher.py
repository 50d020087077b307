"""Publish outbox rows to RabbitMQ with confirms, then mark their runs dispatched.

Rows are published in pipelined batches (one confirm round trip per batch, not
per message), higher priority first, then in the order they were written. A row is
marked published only after the broker confirmed it, so whatever was never confirmed
(a crash, a broker outage) is published again after a restart; the gateway and agent
deduplicate by command id.

Confirms are recorded together, at most RECORD_DELAY_S after the first of them
(or at once past BATCH rows, a failed publish or a stop): recording is a write
transaction, and one per pass kept the next command waiting behind it and the
other writers behind the write gate. Until then the confirmed rows are held here
and never published twice; a crash before recording publishes them again, as above.
The dispatched hop keeps the time of its confirm; the gateway's delivered hop may
be recorded before it (hops tolerate reordering).

Only the controller that leads (holds the scheduler lease, of those sharing its
database) publishes: a standby's dispatcher publishes nothing, and the leader's
publishes the rows the standby's API wrote, woken through the database
(wake_channel) or by its poll. A new leader publishes every row not recorded as
confirmed, some of them perhaps published by the old one just before it stopped:
the edge deduplicates them, as above.

Site queues are declared here, because a gateway may declare nothing (its RabbitMQ
user may not configure anything): before the first dispatch to a site, at start-up
for every site the database knows, and when a site's gateway announces itself. A
site whose commands come back unroutable (its queue was deleted) is declared again.
A site whose queue cannot be declared (e.g. it exists with other arguments) fails
alone: its rows are counted as failed attempts and wait RETRY_PAUSE_S for the next
try, while the other sites' rows are published.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, select, update
from sqlalchemy.engine import Engine

from tme.bus.base import Bus, Unreachable, Unroutable
from tme.controller.services.hop_batch import HopBatch
from tme.controller.services.runs import Hop
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Site, utcnow
from tme.controller.store.planner import broad
from tme.controller.store.rows import table_of
from tme.controller.store.sqlite_gate import pipeline_writes
from tme.errors import BusError
from tme.failure_log import FailureLog
from tme.protocol import DISPATCH_EXCHANGE, Event, Presence, site_routing_key
from tme.states import RunState

log = logging.getLogger("tme.dispatcher")

BATCH = (
    500  # rows per confirm round trip: large enough to amortise it, small enough to stay responsive
)
RECORD_DELAY_S = 0.05  # how late a confirm may be recorded, to share a transaction
IDLE_POLL_S = 1.0  # fallback poll; new rows normally wake the dispatcher at once
RETRY_PAUSE_S = 2.0  # after a broker failure, before trying again

# Built once (building a statement costs more than running it on a small batch);
# rows are read as plain columns, not ORM objects. Higher priority first, then in the
# order written: under a backlog a priority 9 command goes before the priority 1 ones
# written earlier. ix_outbox_unpublished holds them in that order, so a pass reads one
# batch of it (`broad`: SQLite would otherwise search ix_outbox_published_at and sort
# the whole backlog each pass).
OUTBOX = table_of(Outbox)
UNPUBLISHED = (
    select(OUTBOX.c.id, OUTBOX.c.run_id, OUTBOX.c.site, OUTBOX.c.body)
    .where(broad(OUTBOX.c.published_at.is_(None)))
    .order_by(OUTBOX.c.priority.desc(), OUTBOX.c.id)
    .limit(BATCH)
)
# While confirms are held (at most BATCH of them), their rows are still unpublished.
UNPUBLISHED_PAST_HELD = UNPUBLISHED.limit(2 * BATCH)
PUBLISHED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("b_id"))
    .values(
        published_at=bindparam("at", type_=OUTBOX.c.published_at.type),
        attempts=OUTBOX.c.attempts + 1,
    )
)
NOT_CONFIRMED = (
    update(OUTBOX)
    .where(OUTBOX.c.id == bindparam("b_id"))
    .values(last_error=bindparam("error"), attempts=OUTBOX.c.attempts + 1)
)


class Dispatcher:
    def __init__(self, engine: Engine, bus: Bus, wake: threading.Event | None = None) -> None:
        self.engine = engine
        self.bus = bus
        self.wake = wake or threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sites: set[str] = set()  # sites whose queue this process has declared
        self._wanted: set[str] = set()  # sites to declare on the next pass
        self._wanted_lock = threading.Lock()
        self._known_sites_loaded = False
        # Sites whose queue could not be declared: monotonic time of the next attempt.
        # Their rows wait meanwhile, so they never fill a batch and hold up other sites.
        self._undeclarable: dict[str, float] = {}
        self._unreachable = False  # declaring the wanted sites found no broker
        self._failing = False
        self._confirmed: dict[int, tuple[Row[Any], datetime]] = {}  # by outbox id, unrecorded
        self._first_confirmed = 0.0  # monotonic time of the oldest unrecorded confirm
        self.failures = FailureLog(log, "dispatch pass")
        # Told (count, seconds) after each publish of which the broker confirmed some:
        # how many, and how long from the first publish to the last confirm or refusal.
        self.confirm_listeners: list[Callable[[int, float], None]] = []
        # Whether this controller publishes the outbox now: only the one that leads, of
        # the controllers sharing its database (runtime.py). A standby declares the
        # queues of gateways that announce themselves, and publishes nothing.
        self.may_publish: Callable[[], bool] = lambda: True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tme-dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        with pipeline_writes():
            self._run()

    def _run(self) -> None:
        while not self._stop.is_set():
            published = self.run_pass()  # None: the pass failed
            if published is not None and published >= BATCH:
                continue
            passed = published is not None
            pause = RETRY_PAUSE_S if self._failing or not passed else IDLE_POLL_S
            if self._confirmed and passed:
                # Recording is due soon. Not after a failed pass: held confirms whose
                # recording failed (the database is down) are overdue, and a pause of
                # 0 retried hundreds of times a second through the whole outage.
                pause = max(0.0, min(pause, self._record_due_in()))
            self.wake.wait(pause)
            self.wake.clear()
        try:
            self.record_confirmed()
        except Exception:  # published again at the next start: the edge deduplicates
            log.exception("could not record the last confirms before stopping")

    def run_pass(self) -> int | None:
        """Publish what is pending and record the confirms that are due; the number
        published, or None when the pass failed. A failure is logged (once, then once a
        minute while it lasts), never raised: the loop must survive anything, and the
        next pass retries."""
        try:
            published = self.publish_pending()
            if self._confirmed and self._record_due_in() <= 0:
                self.record_confirmed()
        except Exception as exc:
            self.failures.failed(exc)
            return None
        self.failures.passed()
        return published

    def _record_due_in(self) -> float:
        """Seconds until the held confirms are to be recorded (<= 0: now)."""
        if len(self._confirmed) >= BATCH:
            return 0.0
        return self._first_confirmed + RECORD_DELAY_S - time.monotonic()

    def on_message(self, message: Event | Presence) -> None:
        """Event listener: a gateway that announces itself gets its site's queue declared,
        so a gateway that declares nothing can consume before the first command."""
        if isinstance(message, Presence) and message.role == "gateway":
            self.want_site_queue(message.site)

    def want_site_queue(self, site: str) -> None:
        """Declare `site`'s queue on the dispatcher's next pass (any thread)."""
        if site in self._sites:
            return
        with self._wanted_lock:
            self._wanted.add(site)
        self.wake.set()

    def dispatch_pending(self) -> int:
        """Publish one batch of unpublished rows and record it; return how many were
        confirmed."""
        published = self.publish_pending()
        self.record_confirmed()
        return published

    def publish_pending(self) -> int:
        """Publish one batch of the unpublished rows not held as confirmed; hold the
        confirmed ones, record the failed ones (with all held) at once."""
        waiting = self._sites_waiting_to_declare()  # their rows are left out of this pass
        undeclared = self._declare_wanted_sites(waiting)
        if len(self._confirmed) >= BATCH:
            return 0  # recorded first (bounds what is held while recording fails)
        if not self.may_publish():
            return 0  # another controller leads: it publishes every row, this one's too
        with session_scope(self.engine) as session:
            query = UNPUBLISHED_PAST_HELD if self._confirmed else UNPUBLISHED
            if waiting:
                query = query.where(OUTBOX.c.site.not_in(waiting))
            rows = [r for r in session.execute(query) if r.id not in self._confirmed][:BATCH]
        if not rows:
            return 0
        undeclared |= self._declare_sites({row.site for row in rows} - set(undeclared))
        failed = [(row, undeclared[row.site]) for row in rows if row.site in undeclared]
        failed += self._publish([row for row in rows if row.site not in undeclared])
        if failed:
            self._record(failed)
            if not self._failing:
                log.warning("%d of %d commands not confirmed; will retry", len(failed), len(rows))
        self._failing = bool(failed)
        return len(rows) - len(failed)

    def _publish(self, rows: list[Row[Any]]) -> list[tuple[Row[Any], BusError]]:
        """Publish `rows` pipelined; hold the confirmed ones, return the failed ones."""
        if not rows:
            return []
        began = time.perf_counter()
        results = self.bus.publish_many(
            DISPATCH_EXCHANGE,
            [(site_routing_key(r.site), r.body.encode(), r.run_id) for r in rows],
        )
        took = time.perf_counter() - began
        now = utcnow()
        failed = []
        for row, error in zip(rows, results, strict=True):
            if error is None:
                if not self._confirmed:
                    self._first_confirmed = time.monotonic()
                self._confirmed[row.id] = (row, now)
                continue
            failed.append((row, error))
            if isinstance(error, Unroutable):
                self._sites.discard(row.site)  # its queue is gone: declare it again
        if len(failed) < len(rows):
            for listener in self.confirm_listeners:
                try:
                    listener(len(rows) - len(failed), took)
                except Exception:  # a listener (metrics) never holds up dispatching
                    log.exception("confirm listener failed")
        return failed

    @property
    def held(self) -> int:
        """Confirmed rows not recorded yet."""
        return len(self._confirmed)

    def record_confirmed(self) -> None:
        """Record the held confirms now (one transaction)."""
        if self._confirmed:
            self._record([])

    def _declare_sites(self, sites: set[str]) -> dict[str, BusError]:
        """Declare the queues not declared yet, each on its own: one the broker refuses
        (e.g. it exists with other arguments) fails that site only. Returns the failures;
        raises Unreachable without a broker (every site would fail the same, slowly)."""
        failures: dict[str, BusError] = {}
        for site in sorted(sites - self._sites):
            try:
                self.bus.declare_site(site)
            except Unreachable:
                raise
            except BusError as exc:
                failures[site] = exc
                if site not in self._undeclarable:
                    log.warning(
                        "could not declare the queue of site %s, will retry: %s", site, exc.message
                    )
                self._undeclarable[site] = time.monotonic() + RETRY_PAUSE_S
                continue
            self._sites.add(site)
            self._undeclarable.pop(site, None)
        return failures

    def _sites_waiting_to_declare(self) -> list[str]:
        """Sites whose declare failed and is not due again yet (their rows wait)."""
        now = time.monotonic()
        return sorted(site for site, due in self._undeclarable.items() if due > now)

    def _declare_wanted_sites(self, waiting: list[str]) -> dict[str, BusError]:
        """The sites the database knows (first pass) and those announced since, but not
        those `waiting` to retry; a failure is retried later and never holds up
        dispatching. Returns the sites the broker refused."""
        if not self._known_sites_loaded:
            with session_scope(self.engine) as session:
                known = set(session.execute(select(table_of(Site).c.name)).scalars())
            with self._wanted_lock:
                self._wanted |= known
            self._known_sites_loaded = True
        with self._wanted_lock:
            wanted, self._wanted = self._wanted, set()
        refused: dict[str, BusError] = {}
        try:
            refused = self._declare_sites(wanted - set(waiting))
            self._unreachable = False
        except Unreachable as exc:
            if not self._unreachable:
                log.warning("could not declare site queues yet, will retry: %s", exc.message)
            self._unreachable = True
        with self._wanted_lock:
            self._wanted |= wanted - self._sites
        return refused

    def _record(self, failed: list[tuple[Row[Any], BusError]]) -> None:
        """One transaction: stamp the held confirmed rows and move their runs (each hop
        at its confirm's time), count the failed attempts; then hold nothing."""
        confirmed = sorted(self._confirmed.values(), key=lambda held: held[0].id)
        with session_scope(self.engine) as session:
            batch = HopBatch(session, (row.run_id for row, _ in confirmed))
            if confirmed:
                stamps = [{"b_id": row.id, "at": at} for row, at in confirmed]
                session.execute(PUBLISHED, stamps)
            if failed:
                errors = [{"b_id": row.id, "error": str(error)[:2000]} for row, error in failed]
                session.execute(NOT_CONFIRMED, errors)
            for row, at in confirmed:
                if row.run_id in batch.runs:
                    hop = Hop(RunState.dispatched, "confirmed by broker", "controller", at)
                    batch.record(row.run_id, hop)
            batch.write()
        self._confirmed.clear()
