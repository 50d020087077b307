"""Notifications end to end: a failed run or an offline agent becomes a delivery row,
then an email through a real SMTP server or a signed webhook, retried with backoff."""

from __future__ import annotations

import hashlib
import hmac

from notify_helpers import add_rule as _add_rule
from notify_helpers import deliveries as _deliveries
from notify_helpers import email_to_ops
from notify_helpers import fail_a_run as _fail_a_run
from sqlalchemy import event
from sqlmodel import Session
from waiting import wait_until

from tme.config import Settings
from tme.controller.event_apply import apply_presence
from tme.controller.store.models import RunEvent, Task
from tme.protocol import Presence

SECRET = "webhook-signing-secret"


def test_failed_run_sends_an_email(app_engine, smtp_server, start_notifier) -> None:
    host, port, inbox = smtp_server
    settings = Settings(notifications={"email": email_to_ops(host, port)})
    start_notifier(settings)
    task_id = _fail_a_run(app_engine, reason="modbus timeout on unit 2")
    assert inbox.arrived.wait(10)
    recipients, message = inbox.messages[0]
    assert recipients == ["ops@plant.example"]
    assert message["Subject"] == "[TME] read tank level failed"
    assert "modbus timeout on unit 2" in message.get_payload()
    assert f"Task {task_id}" in message.get_payload()
    wait_until(lambda: [d.status for d in _deliveries(app_engine)] == ["delivered"], 10)


def test_an_email_links_the_run_page_under_http_public_url(
    app_engine, smtp_server, start_notifier
) -> None:  # type: ignore[no-untyped-def]
    """configuration.md: http.public_url is "the URL users reach TME at (behind a proxy),
    for links in emails"; the emails had no link, whatever it said."""
    host, port, inbox = smtp_server
    settings = Settings(
        http={"public_url": "https://tme.plant.example/"},
        notifications={"email": email_to_ops(host, port)},
    )
    start_notifier(settings)
    task_id = _fail_a_run(app_engine, reason="modbus timeout on unit 2")
    assert inbox.arrived.wait(10)
    text = inbox.messages[0][1].get_payload(decode=True).decode()
    with Session(app_engine) as session:
        run_id = session.get_one(Task, task_id).latest_run_id
    assert f"https://tme.plant.example/ui/runs/{run_id}" in text, text


def test_webhook_is_signed_and_retried_until_delivered(
    app_engine, http_receiver, start_notifier
) -> None:
    http_receiver.answers = [500, 503]  # the receiver is down twice, then takes it
    _add_rule(
        app_engine,
        name="ops hook",
        channel="webhook",
        target=http_receiver.url,
        events=["failed"],
        secret=SECRET,
    )
    start_notifier(Settings())
    _fail_a_run(app_engine)
    assert http_receiver.delivered.wait(10)
    assert len(http_receiver.requests) == 3
    headers, body = http_receiver.requests[-1]
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-TME-Signature"] == expected
    assert http_receiver.body(-1)["event"] == "failed"
    assert http_receiver.body(-1)["run"]["reason"] == "modbus timeout"
    wait_until(lambda: _deliveries(app_engine)[0].status == "delivered", 10)
    (delivery,) = _deliveries(app_engine)
    assert delivery.attempts == 3
    assert "HTTP 503" in delivery.last_error


def test_webhook_gives_up_after_the_last_attempt(app_engine, http_receiver, start_notifier) -> None:
    http_receiver.answers = [500] * 10
    _add_rule(
        app_engine,
        name="hook",
        channel="webhook",
        target=http_receiver.url,
        events=["failed"],
        secret=SECRET,
    )
    start_notifier(Settings(), max_attempts=3)
    _fail_a_run(app_engine)
    wait_until(lambda: [d.status for d in _deliveries(app_engine)] == ["failed"], 10)
    assert len(http_receiver.requests) == 3
    assert _deliveries(app_engine)[0].attempts == 3


def test_rules_fire_only_on_their_task_and_events(
    app_engine, feed, http_receiver, start_notifier
) -> None:
    first = _fail_a_run(app_engine, name="before any rule")
    _add_rule(
        app_engine,
        name="only another task",
        channel="webhook",
        target=http_receiver.url,
        events=["failed"],
        task_id=first + 99,
    )
    start_notifier(
        Settings(
            notifications={
                "webhooks": [
                    {
                        "url": http_receiver.url,
                        "secret": SECRET,
                        "events": ["timed_out", "agent_offline"],
                    }
                ]
            }
        )
    )
    _fail_a_run(app_engine, name="failed, which no rule watches")
    # A change the global hook does watch, made last: once it is delivered, the
    # notifier has passed over the failure above.
    offline = Presence(site="plant-x", agent="line-b", state="offline")
    feed.on_message(offline)
    assert http_receiver.delivered.wait(10)
    assert [http_receiver.body(i)["event"] for i in range(len(http_receiver.requests))] == [
        "agent_offline"
    ]
    assert [d.event for d in _deliveries(app_engine)] == ["agent_offline"]


def test_agent_offline_notifies_once(app_engine, feed, http_receiver, start_notifier) -> None:
    start_notifier(
        Settings(notifications={"webhooks": [{"url": http_receiver.url, "secret": SECRET}]})
    )
    offline = Presence(site="plant-x", agent="skid-a", state="offline")
    with Session(app_engine) as session:
        apply_presence(session, offline)
        session.commit()
    feed.on_message(offline)
    feed.on_message(offline)  # redelivered by the bus: the same change
    assert http_receiver.delivered.wait(10)
    body = http_receiver.body(0)
    assert body["event"] == "agent_offline"
    assert body["agent"]["agent"] == "skid-a"
    wait_until(lambda: _deliveries(app_engine) and _deliveries(app_engine)[0].delivered_at, 10)
    assert len(_deliveries(app_engine)) == 1


def test_a_device_stopped_by_its_agent_notifies_once_per_stop(
    app_engine, feed, smtp_server, start_notifier
) -> None:
    """A pump stopped by its agent when the site lost the controller: the controller hears
    of it in the agent's presence once the link is back, and every presence after says
    it again; one email per stop (its latch's time), a new stop another one."""
    host, port, inbox = smtp_server
    start_notifier(Settings(notifications={"email": email_to_ops(host, port)}))
    latch = {
        "by": "agent skid-a (link loss)",
        "reason": "link to the controller lost for 300 s (the site gateway is offline)",
        "at": "2026-12-07T06:00:00+00:00",
    }

    def presence(stopped: dict | None) -> Presence:
        pump = {"name": "pump1", "profile": "pump", "points": []}
        if stopped is not None:
            pump["stopped"] = stopped
        return Presence(site="plant-x", agent="skid-a", state="online", devices=[pump])

    feed.on_message(presence(None))  # running: nothing to say
    for _ in range(3):  # every presence of the agent says the latch again
        feed.on_message(presence(latch))
    assert inbox.arrived.wait(10)
    _recipients, message = inbox.messages[0]
    assert message["Subject"] == (
        "[TME] device plant-x/skid-a/pump1 stopped by agent skid-a (link loss)"
    )
    assert "the site gateway is offline" in message.get_payload(decode=True).decode()
    wait_until(lambda: [d.status for d in _deliveries(app_engine)] == ["delivered"], 10)
    assert [d.event for d in _deliveries(app_engine)] == ["device_stopped"]
    assert _deliveries(app_engine)[0].payload["device"]["name"] == "pump1"

    again = {**latch, "by": "alice", "reason": "leak", "at": "2026-12-07T07:00:00+00:00"}
    feed.on_message(presence(again))  # resumed, then stopped again: another stop
    wait_until(lambda: len(_deliveries(app_engine)) == 2, 10)
    assert _deliveries(app_engine)[1].payload["device"]["by"] == "alice"


def test_a_site_rule_fires_only_on_its_site(
    app_engine, feed, http_receiver, start_notifier
) -> None:
    """A rule watching one site (a scoped engineer's) hears nothing of the others, and
    each delivery records the site it is about, so its readers can be scoped too."""
    _add_rule(
        app_engine,
        name="plant-x only",
        channel="webhook",
        target=http_receiver.url,
        events=["agent_offline"],
        site="plant-x",
    )
    start_notifier(Settings())
    feed.on_message(Presence(site="plant-y", agent="line-b", state="offline"))
    feed.on_message(Presence(site="plant-x", agent="skid-a", state="offline"))
    assert http_receiver.delivered.wait(10)
    wait_until(lambda: _deliveries(app_engine) and _deliveries(app_engine)[-1].delivered_at, 10)
    assert [(d.site, d.payload["agent"]["agent"]) for d in _deliveries(app_engine)] == [
        ("plant-x", "skid-a")
    ]
    assert [http_receiver.body(i)["agent"]["site"] for i in range(len(http_receiver.requests))] == [
        "plant-x"
    ]


def test_a_filtered_feed_reads_only_wanted_changes_and_moves_past_the_rest(
    app_engine, feed
) -> None:  # type: ignore[no-untyped-def]
    """The notifier reads failures only: the changes of a run that succeeds are never
    loaded, and its cursor still moves past them."""
    start = feed.last_run_event_id()
    _fail_a_run(app_engine, "flush", reason="", outcome="succeeded")
    newest = feed.last_run_event_id()
    loaded: list[object] = []
    listener = lambda target, _context: loaded.append(target)  # noqa: E731
    event.listen(RunEvent, "load", listener)
    try:
        changes, cursor = feed.runs_after(start, states=frozenset({"failed", "timed_out"}))
    finally:
        event.remove(RunEvent, "load", listener)
    assert changes == [] and cursor == newest
    assert loaded == []  # the succeeded run's five changes were never read
    failed_task = _fail_a_run(app_engine)
    changes, cursor = feed.runs_after(cursor, states=frozenset({"failed", "timed_out"}))
    assert [(c.task_id, c.to_state) for c in changes] == [(failed_task, "failed")]
    assert cursor == feed.last_run_event_id()
    assert feed.runs_after(cursor, states=frozenset({"failed"})) == ([], cursor)
