"""The notifier: turns changes into delivery rows, then sends them with retries.

Every delivery is a row first (status pending), so a crash between the change
and the send loses nothing, a retry is visible, and the same change never
notifies one rule twice (the dedup key is unique). A failed attempt is retried
after `backoff_s * 2**(attempts-1)` until `max_attempts`, then marked failed.

Runs on its own thread; the sends (SMTP and HTTP calls block) run on a few sender
threads, one delivery per target at a time, so an endpoint that is slow to answer
holds back only its own deliveries. Whatever goes wrong while sending one delivery
is that delivery's failed attempt, never the notifier's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from tme.controller.change_feed import AgentChange, ChangeFeed, RunChange
from tme.controller.notifications import senders, targets
from tme.controller.notifications.models import NotificationDelivery
from tme.controller.notifications.rules import (
    RUN_EVENTS,
    Notice,
    Rule,
    active_rules,
    describe,
    slow_notice,
    subject_and_text,
)
from tme.controller.services.durations import duration_of
from tme.controller.store.models import Run, utcnow
from tme.failure_log import FailureLog
from tme.failure_log import describe as describe_error

log = logging.getLogger("tme.notify")

POLL_S = 0.5  # how soon a change is noticed; bus messages ring no bell on this thread
MAX_ATTEMPTS = 5
BACKOFF_S = 2.0
# Deliveries in flight at once, each to another target. A send lasts at most
# `webhook_timeout_s` (or the email `timeout_s`), so a few slow endpoints delay the
# rest by that much at worst, and a few threads stay cheap.
SENDERS = 4


class Notifier:
    def __init__(
        self,
        engine: Engine,
        settings: Any,
        feed: ChangeFeed,
        *,
        backoff_s: float = BACKOFF_S,
        max_attempts: int = MAX_ATTEMPTS,
        poll_s: float = POLL_S,
        senders: int = SENDERS,
    ) -> None:
        self.engine, self.settings, self.feed = engine, settings, feed
        self.backoff_s, self.max_attempts, self.poll_s = backoff_s, max_attempts, poll_s
        self.senders = senders
        self._stop = threading.Event()
        # Set by a sender that is done (its target is free again) and by stop.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        # delivery id -> target of each delivery being sent; guarded by _lock
        self._in_flight: dict[int, str] = {}
        # delivery id -> outcome (None: delivered, else why not) of an attempt that could
        # not be stored (the database unreachable or read-only): stored by a later pass,
        # never sent again meanwhile; guarded by _lock
        self._unstored: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self._run_cursor = 0
        self._agent_cursor = 0
        self.failures = FailureLog(log, "notifier pass")
        # Whether this controller sends now: of the controllers sharing a database, only
        # the one that leads does (observers.py), so a delivery is not sent by two.
        self.may_send: Callable[[], bool] = lambda: True

    def start(self) -> None:
        # Only what happens from now on notifies; history was someone else's to report.
        self._run_cursor = self.feed.last_run_event_id()
        self._agent_cursor = self.feed.agent_seq
        self._pool = ThreadPoolExecutor(self.senders, thread_name_prefix="tme-notify-send")
        self._thread = threading.Thread(target=self._loop, name="tme-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop handing out deliveries, then wait for the sends in flight (each one
        bounded by its timeout); an unsent delivery stays pending for the next start, and
        so does a sent one whose outcome could not be stored (it is sent again then)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_pass()
            self._wake.wait(self.poll_s)
            self._wake.clear()  # the next pass reads the state afresh

    def run_pass(self) -> None:
        """Store the outcomes of attempts not stored yet, record the new changes'
        deliveries, then hand out the due ones. A failure is logged (once, then once a
        minute while it lasts), never raised: the notifier goes on after a database
        outage. While an outcome cannot be stored, nothing more is sent."""
        try:
            self.store_unstored_outcomes()
            self.record_new_changes()
            self.send_due()
        except Exception as exc:
            self.failures.failed(exc)
        else:
            self.failures.passed()

    def record_new_changes(self) -> int:
        with Session(self.engine) as session:
            rules = active_rules(session, self.settings)
        # Successes are read only while a rule asks for `slow`: most controllers have none.
        slow_wanted = any("slow" in rule.events for rule in rules)
        states = RUN_EVENTS | {"succeeded"} if slow_wanted else RUN_EVENTS
        changes: list[RunChange | AgentChange] = []
        runs, self._run_cursor = self.feed.runs_after(self._run_cursor, states=states)
        changes.extend(runs)
        agents = self.feed.agents_after(self._agent_cursor)
        if agents:
            self._agent_cursor = agents[-1].seq
        changes.extend(agents)
        described = [(c, d) for c in changes for d in describe(c)]
        if slow_wanted:
            described += self._slow(runs)
        if not described:
            return 0
        made = 0
        for change, (event, key, payload) in described:
            task_id = change.task_id if isinstance(change, RunChange) else None
            for rule in rules:
                if rule.fires_on(event, task_id, change.site):
                    made += self._record(rule, event, key, payload, change.site)
        return made

    def _slow(self, runs: list[RunChange]) -> list[tuple[RunChange, Notice]]:
        """The `slow` notices of the runs that succeeded in these changes."""
        succeeded = [
            c
            for c in runs
            if c.to_state == "succeeded" and c.from_state != c.to_state and not c.late
        ]
        if not succeeded:
            return []
        rule = self.settings.notifications.slow
        found = []
        with Session(self.engine) as session:
            for change in succeeded:
                run = session.get(Run, change.run_id)
                if run is None:
                    continue
                duration = duration_of(session, run, rule)
                if duration.slow:
                    found.append((change, slow_notice(change, duration)))
        return found

    def _record(
        self, rule: Rule, event: str, key: str, payload: dict[str, Any], site: str | None
    ) -> int:
        row = NotificationDelivery(
            dedup_key=f"{rule.key}|{key}"[:300],
            rule=rule.key,
            channel=rule.channel,
            target=rule.target,
            event=event,
            site=site,
            payload=payload,
        )
        try:
            with Session(self.engine) as session:
                session.add(row)
                session.commit()
        except IntegrityError:  # already recorded (a restart, a second controller)
            return 0
        return 1

    def send_due(self) -> int:
        """Hand the oldest due delivery of each idle target to a sender thread, as many
        as there are idle senders; the number handed out."""
        with self._lock:
            busy = set(self._in_flight.values())
            idle = self.senders - len(self._in_flight)
            sent = set(self._unstored)
        if idle <= 0 or self._pool is None or not self.may_send():
            return 0
        with Session(self.engine) as session:
            oldest_per_target = (
                select(func.min(NotificationDelivery.id))
                .where(NotificationDelivery.status == "pending")
                .where(col(NotificationDelivery.next_attempt_at) <= utcnow())
                .where(col(NotificationDelivery.target).not_in(busy))
                .where(col(NotificationDelivery.id).not_in(sent))
                .group_by(col(NotificationDelivery.target))
                .order_by(func.min(NotificationDelivery.id))
                .limit(idle)
            )
            ids = list(session.exec(oldest_per_target).all())
            if not ids:
                return 0
            due = session.exec(
                select(NotificationDelivery)
                .where(col(NotificationDelivery.id).in_(ids))
                .order_by(col(NotificationDelivery.id))
            ).all()
            secrets = self._secrets(session)
        for delivery in due:
            assert delivery.id is not None
            with self._lock:
                self._in_flight[delivery.id] = delivery.target
            self._pool.submit(self._attempt, delivery, secrets.get(delivery.rule, ""))
        return len(due)

    def _secrets(self, session: Session) -> dict[str, str]:
        return {r.key: r.secret for r in active_rules(session, self.settings)}

    def _attempt(self, delivery: NotificationDelivery, secret: str) -> None:
        """On a sender thread: one attempt at `delivery`, then its outcome stored (or
        kept for a later pass to store)."""
        assert delivery.id is not None
        error = self._try_send(delivery, secret)
        try:
            self._store_outcomes({delivery.id: error})
        except Exception as exc:  # the database: kept, stored by a later pass
            with self._lock:
                self._unstored[delivery.id] = error
            log.warning(
                "notification %s %s; its outcome is stored once the database takes it (%s)",
                delivery.id,
                "sent" if error is None else "not sent",
                describe_error(exc),
            )
        finally:
            with self._lock:
                del self._in_flight[delivery.id]
            self._wake.set()

    def _try_send(self, delivery: NotificationDelivery, secret: str) -> str | None:
        """None when sent, else why not. Never raises: a target no sender can use
        (a malformed URL or address) must not stop the deliveries behind it."""
        try:
            self._send(delivery, secret)
        except senders.DeliveryFailed as exc:
            return str(exc)
        except Exception as exc:
            # The message may quote the target, which may hold a token: the name only.
            error = f"{type(exc).__name__} while sending"
            where = targets.redact(delivery.channel, delivery.target)
            log.warning("notification %s to %s failed: %s", delivery.id, where, error)
            return error
        return None

    def store_unstored_outcomes(self) -> None:
        """Store the outcomes of attempts that could not be stored when they were made;
        raise while they still cannot be."""
        with self._lock:
            outcomes = dict(self._unstored)
        if not outcomes:
            return
        self._store_outcomes(outcomes)
        with self._lock:
            for delivery_id in outcomes:
                del self._unstored[delivery_id]

    def _store_outcomes(self, outcomes: dict[int, str | None]) -> None:
        """One transaction: each attempt counted, by its outcome, on its delivery (one
        no longer pending, finished elsewhere meanwhile, is left as it is)."""
        with Session(self.engine) as session:
            for delivery_id, error in outcomes.items():
                row = session.get(NotificationDelivery, delivery_id)
                if row is not None and row.status == "pending":
                    self._record_attempt(row, error)
                    session.add(row)
            session.commit()

    def _record_attempt(self, delivery: NotificationDelivery, error: str | None) -> None:
        delivery.attempts += 1
        if error is None:
            delivery.status = "delivered"
            delivery.delivered_at = utcnow()
            return
        delivery.last_error = error[:2000]
        if delivery.attempts >= self.max_attempts:
            delivery.status = "failed"
            log.warning("giving up on notification %s: %s", delivery.id, error)
        else:
            delay = self.backoff_s * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)

    def _send(self, delivery: NotificationDelivery, secret: str) -> None:
        notify = self.settings.notifications
        if delivery.channel == "webhook":
            senders.post_webhook(
                delivery.target,
                secret,
                {**delivery.payload, "delivery": delivery.id},
                delivery.id or 0,
                notify.webhook_timeout_s,
                notify.refused_networks(),
            )
            return
        subject, text = subject_and_text(delivery.payload, self.settings.http.public_url)
        to = [a.strip() for a in delivery.target.split(",") if a.strip()]
        senders.send_email(notify.email, to, subject, text)
