"""What one bad delivery may cost the others: nothing. A target no sender can use is
that delivery's failure (retried, then failed), an endpoint that never finishes its
answer is given up at the deadline, and while it dawdles the other targets are sent."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from notify_helpers import add_delivery, add_rule, deliveries, fail_a_run, reaching_loopback
from pg_database import PgDatabase
from waiting import wait_until

from tme.config import Settings
from tme.controller.change_feed import ChangeFeed
from tme.controller.notifications import senders
from tme.controller.notifications.notifier import Notifier
from tme.controller.store.db import make_engine, upgrade
from tme.settings_models import EmailSettings

# Stored as an older release (or a hand-edited database) may have them: the API now
# refuses each of these, but the notifier must still survive them.
UNUSABLE_TARGETS = {
    "a malformed URL (InvalidURL)": ("webhook", "http://[::1/hook?token=s3cr3t"),
    "an over-long host name (UnicodeError)": ("webhook", f"http://{'a' * 70}.invalid/s3cr3t"),
    "a port out of range": ("webhook", "http://127.0.0.1:99999/s3cr3t"),
    "an address with CR/LF (ValueError)": ("email", "ops@plant.example\r\nBcc: s3cr3t@evil"),
}


@pytest.mark.parametrize("channel,target", UNUSABLE_TARGETS.values(), ids=UNUSABLE_TARGETS)
def test_a_target_no_sender_can_use_fails_alone(
    app_engine, http_receiver, smtp_server, start_notifier, channel: str, target: str
) -> None:
    """Before: the exception escaped the notifier's pass, the attempt was never
    counted, and every pass died on the same delivery, so nothing was ever sent."""
    host, port, _inbox = smtp_server
    add_rule(app_engine, name="broken", channel=channel, target=target, events=["failed"])
    add_rule(app_engine, name="ops", channel="webhook", target=http_receiver.url)
    email = {"smtp_host": host, "smtp_port": port, "starttls": False}
    start_notifier(Settings(notifications={"email": email}), max_attempts=2)
    fail_a_run(app_engine)

    assert http_receiver.delivered.wait(10), "the good webhook was never sent"
    wait_until(lambda: [d.status for d in deliveries(app_engine)] == ["failed", "delivered"], 10)
    broken = deliveries(app_engine)[0]
    assert broken.attempts == 2
    assert broken.last_error
    assert "s3cr3t" not in broken.last_error


def test_an_unexpected_error_is_the_deliverys_failure_and_names_no_target(
    app_engine, http_receiver, start_notifier, monkeypatch, caplog
) -> None:
    """Whatever a sender raises fails that delivery only, and neither its error nor
    the log quotes the target (a webhook URL often holds a token)."""
    real_post = senders.post_webhook

    def post(url: str, *args: Any) -> None:
        if "s3cr3t" in url:
            raise RuntimeError(f"cannot post to {url}")
        real_post(url, *args)

    monkeypatch.setattr(senders, "post_webhook", post)
    secret_url = "https://ops:s3cr3t@alerts.example.invalid/hook/s3cr3t"
    add_rule(app_engine, name="odd", channel="webhook", target=secret_url, events=["failed"])
    add_rule(app_engine, name="ops", channel="webhook", target=http_receiver.url)
    caplog.set_level(logging.INFO, logger="tme.notify")
    start_notifier(Settings(), max_attempts=2)
    fail_a_run(app_engine)

    assert http_receiver.delivered.wait(10)
    wait_until(lambda: [d.status for d in deliveries(app_engine)] == ["failed", "delivered"], 10)
    odd = deliveries(app_engine)[0]
    assert odd.attempts == 2
    assert odd.last_error == "RuntimeError while sending"
    assert "alerts.example.invalid/…" in caplog.text
    assert "s3cr3t" not in caplog.text


def test_the_webhook_deadline_counts_the_whole_answer(dripping_server) -> None:
    """httpx's timeout bounds each read; an endpoint sending a header line every 50 ms
    never trips it. The deadline bounds the whole request instead."""
    started = time.monotonic()
    with pytest.raises(senders.DeliveryFailed, match=r"within 0\.5 s"):
        senders.post_webhook(dripping_server.url, "", {"event": "failed"}, 1, timeout_s=0.5)
    assert time.monotonic() - started < 3
    assert dripping_server.accepted.is_set()


def test_a_slow_endpoint_does_not_hold_back_the_others(
    app_engine, http_receiver, dripping_server, start_notifier
) -> None:
    """The slow endpoint's delivery is the older one, and its deadline is far off:
    the other webhook is sent while it is still in flight."""
    add_rule(app_engine, name="slow", channel="webhook", target=dripping_server.url)
    add_rule(app_engine, name="ops", channel="webhook", target=http_receiver.url)
    notifier = start_notifier(Settings(notifications={"webhook_timeout_s": 60}))
    fail_a_run(app_engine)

    assert dripping_server.accepted.wait(10)
    assert http_receiver.delivered.wait(5), "the other webhook waited for the slow one"
    slow = deliveries(app_engine)[0]
    assert (slow.status, slow.attempts) == ("pending", 0)  # still in flight
    wait_until(lambda: deliveries(app_engine)[1].status == "delivered", 10)

    # Stopping waits for the send in flight, which ends when the endpoint hangs up.
    dripping_server.release.set()
    notifier.stop()
    senders_left = [t for t in threading.enumerate() if t.name.startswith("tme-notify")]
    assert senders_left == []
    assert deliveries(app_engine)[0].attempts >= 1  # recorded before the stop returned


def test_one_target_gets_one_delivery_at_a_time(
    app_engine, dripping_server, start_notifier
) -> None:
    """Two deliveries due to the same slow endpoint: the second waits for the first,
    so a slow endpoint takes one sender thread, not all of them."""
    for rule in ("first", "second"):
        add_delivery(app_engine, rule, dripping_server.url)
    # No polling after the first pass; a failed attempt waits an hour.
    notifier = start_notifier(Settings(), poll_s=3600, backoff_s=3600)
    assert dripping_server.accepted.wait(10)
    assert notifier.send_due() == 0  # its only target is busy
    assert dripping_server.requests == 1

    dripping_server.release.set()  # the endpoint hangs up: the first attempt failed
    # The sender that is done wakes the notifier, which hands out the second.
    wait_until(lambda: deliveries(app_engine)[1].status == "delivered", 10)
    first = deliveries(app_engine)[0]
    assert (first.status, first.attempts) == ("pending", 1)
    assert dripping_server.requests == 2


@pytest.fixture
def dripping_smtp() -> Iterator[int]:
    """An SMTP server whose greeting never ends: a continuation line every 50 ms."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    closing = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            while not closing.wait(0.05):  # the pace of the drip
                try:
                    conn.sendall(b"220-still greeting\r\n")
                except OSError:
                    return

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    yield listener.getsockname()[1]
    closing.set()
    listener.close()
    server.join(timeout=5)


def test_the_email_deadline_counts_the_whole_exchange(dripping_smtp: int) -> None:
    """smtplib's timeout bounds each read; a server sending a line every 50 ms never
    trips it, and held the sender thread for good. The deadline bounds the exchange."""
    email = EmailSettings(
        smtp_host="127.0.0.1", smtp_port=dripping_smtp, starttls=False, timeout_s=1
    )
    outcome: list[BaseException] = []

    def send() -> None:
        try:
            senders.send_email(email, ["ops@plant.example"], "run failed", "pump 2")
        except BaseException as exc:  # the outcome is what is checked
            outcome.append(exc)

    sending = threading.Thread(target=send, daemon=True)
    sending.start()
    sending.join(timeout=30)  # a deadline for the test, far past the send's own
    assert not sending.is_alive(), "the send outlived its deadline"
    assert len(outcome) == 1 and isinstance(outcome[0], senders.DeliveryFailed), outcome
    assert "within 1 s" in str(outcome[0])


@pytest.mark.external_service
def test_a_delivery_sent_while_the_database_refuses_writes_is_sent_once(
    pg_database: PgDatabase, http_receiver: Any
) -> None:
    """The database reads but refuses writes (a failover): a due delivery is sent, its
    outcome cannot be stored, and it is kept until it can be, not sent again. It stayed
    pending, so every pass sent it again, twice a second or more for the whole
    failover, with a traceback each time."""
    engine = make_engine(pg_database.url())
    notifier = None
    try:
        upgrade(engine)
        rule = add_rule(engine, name="ops", channel="webhook", target=http_receiver.url)
        add_delivery(engine, f"rule:{rule}", http_receiver.url)
        pg_database.refuse_writes()
        settings = reaching_loopback(Settings())
        notifier = Notifier(engine, settings, ChangeFeed(engine), poll_s=0.02)
        notifier.start()
        tried = notifier
        wait_until(
            lambda: len(http_receiver.requests) > 1 or tried.failures.failed_passes >= 10,
            what="the delivery sent again, or ten passes failing to store its outcome",
        )
        assert len(http_receiver.requests) == 1
        pg_database.take_writes()
        wait_until(lambda: [d.status for d in deliveries(engine)] == ["delivered"])
        assert deliveries(engine)[0].attempts == 1
        assert len(http_receiver.requests) == 1
    finally:
        if notifier is not None:
            notifier.stop()
        engine.dispose()
