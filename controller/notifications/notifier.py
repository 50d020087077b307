"""The notifier: turns changes into delivery rows, then sends them with retries.

Every delivery is a row first (status pending), so a crash between the change
and the send loses nothing, a retry is visible, and the same change never
notifies one rule twice (the dedup key is unique). A failed attempt is retried
after `backoff_s * 2**(attempts-1)` until `max_attempts`, then marked failed.
Runs on its own thread: SMTP and HTTP calls block.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tme.controller.change_feed import AgentChange, ChangeFeed, RunChange
from tme.controller.notifications import senders
from tme.controller.notifications.models import NotificationDelivery
from tme.controller.notifications.rules import (
    RUN_EVENTS,
    Rule,
    active_rules,
    describe,
    subject_and_text,
)
from tme.controller.store.models import utcnow

log = logging.getLogger("tme.notify")

POLL_S = 0.5  # how soon a change is noticed; bus messages ring no bell on this thread
MAX_ATTEMPTS = 5
BACKOFF_S = 2.0


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
    ) -> None:
        self.engine, self.settings, self.feed = engine, settings, feed
        self.backoff_s, self.max_attempts, self.poll_s = backoff_s, max_attempts, poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._run_cursor = 0
        self._agent_cursor = 0

    def start(self) -> None:
        # Only what happens from now on notifies; history was someone else's to report.
        self._run_cursor = self.feed.last_run_event_id()
        self._agent_cursor = self.feed.agent_seq
        self._thread = threading.Thread(target=self._loop, name="tme-notifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.record_new_changes()
                self.send_due()
            except Exception:  # keep notifying after a database hiccup
                log.exception("notifier pass failed")
            self._stop.wait(self.poll_s)

    def record_new_changes(self) -> int:
        changes: list[RunChange | AgentChange] = []
        runs, self._run_cursor = self.feed.runs_after(self._run_cursor, states=RUN_EVENTS)
        changes.extend(runs)
        agents = self.feed.agents_after(self._agent_cursor)
        if agents:
            self._agent_cursor = agents[-1].seq
        changes.extend(agents)
        described = [(c, d) for c in changes if (d := describe(c)) is not None]
        if not described:
            return 0
        with Session(self.engine) as session:
            rules = active_rules(session, self.settings)
        made = 0
        for change, (event, key, payload) in described:
            task_id = change.task_id if isinstance(change, RunChange) else None
            for rule in rules:
                if rule.fires_on(event, task_id, change.site):
                    made += self._record(rule, event, key, payload, change.site)
        return made

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

    def send_due(self) -> None:
        now = utcnow()
        with Session(self.engine) as session:
            due = session.exec(
                select(NotificationDelivery)
                .where(NotificationDelivery.status == "pending")
                .where(col(NotificationDelivery.next_attempt_at) <= now)
                .order_by(col(NotificationDelivery.id))
                .limit(100)
            ).all()
            secrets = self._secrets(session)
            for delivery in due:
                self._attempt(delivery, secrets.get(delivery.rule, ""))
                session.add(delivery)
                session.commit()

    def _secrets(self, session: Session) -> dict[str, str]:
        return {r.key: r.secret for r in active_rules(session, self.settings)}

    def _attempt(self, delivery: NotificationDelivery, secret: str) -> None:
        delivery.attempts += 1
        try:
            self._send(delivery, secret)
        except senders.DeliveryFailed as exc:
            delivery.last_error = str(exc)[:2000]
            if delivery.attempts >= self.max_attempts:
                delivery.status = "failed"
                log.warning("giving up on notification %s: %s", delivery.id, exc)
            else:
                delay = self.backoff_s * 2 ** (delivery.attempts - 1)
                delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
            return
        delivery.status = "delivered"
        delivery.delivered_at = utcnow()

    def _send(self, delivery: NotificationDelivery, secret: str) -> None:
        notify = self.settings.notifications
        if delivery.channel == "webhook":
            senders.post_webhook(
                delivery.target,
                secret,
                {**delivery.payload, "delivery": delivery.id},
                delivery.id or 0,
                notify.webhook_timeout_s,
            )
            return
        subject, text = subject_and_text(delivery.payload)
        to = [a.strip() for a in delivery.target.split(",") if a.strip()]
        senders.send_email(notify.email, to, subject, text)
