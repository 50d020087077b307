"""client.auth, client.audit and client.notifications (sync and async) against the real
app over HTTP: what an admin script does, a non-admin's 403, a 404, and 422s, both those
the SDK refuses before any request (naming the argument) and those the server answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import Engine

import tme
from tme.admin_schemas import (
    AuditEntryPublic,
    NotificationDeliveryPublic,
    NotificationRulePublic,
    PrincipalPublic,
)
from tme.controller.notifications.models import NotificationDelivery
from tme.controller.services import audit
from tme.controller.store.db import session_scope
from tme.errors import AuthError, Conflict, Forbidden, NotFound, ValidationError


def test_auth_logs_in_says_who_and_logs_out(live_url: str, admin_credentials) -> None:  # type: ignore[no-untyped-def]
    with tme.Client(live_url) as admin:
        assert admin.auth.me() == PrincipalPublic(
            username="admin", role="admin", sites=["*"], token_kind="api"
        )
        session = admin.auth.login("admin", admin_credentials.password)
        with pytest.raises(Conflict):  # an API token is no session: it stays valid
            admin.auth.logout()
        with pytest.raises(AuthError):
            admin.auth.login("admin", "not the password")
    assert session.expires_at > datetime.now(UTC)
    with tme.Client(live_url, token=session.token) as by_session:
        assert by_session.auth.me().token_kind == "session"
        by_session.auth.logout()
        with pytest.raises(AuthError):  # its token was revoked
            by_session.auth.me()


def test_auth_refuses_an_empty_username_before_any_request(closed_port_url: str) -> None:
    with tme.Client(closed_port_url, token="t") as client, pytest.raises(ValidationError) as caught:
        client.auth.login("", "secret")
    assert [e["field"] for e in caught.value.field_errors] == ["username"]


def _entries(engine: Engine, n: int, action: str = "sdktest.") -> list[int]:
    """`n` audit rows of `action`, oldest first, with their outcomes alternating."""
    outcomes = ["ok", "refused"]
    return [
        audit.record(engine, f"{action}{i}", actor="script", outcome=outcomes[i % 2]).id
        for i in range(n)
    ]


def test_audit_lists_every_page_newest_first_with_filters(
    live_url: str, app_engine: Engine
) -> None:
    ids = _entries(app_engine, 5)
    with tme.Client(live_url) as client:
        listed = list(client.audit.list(action="sdktest.", page_size=2))  # three pages
        refused = list(client.audit.list(action="sdktest.", outcome="refused", page_size=1))
        later = datetime.now(UTC) + timedelta(hours=1)
        none_since = list(client.audit.list(action="sdktest.", since=later))
    assert all(isinstance(e, AuditEntryPublic) for e in listed)
    assert [e.id for e in listed] == ids[::-1]
    assert [e.id for e in refused] == [ids[3], ids[1]]
    assert none_since == []


def test_audit_exports_csv(live_url: str, app_engine: Engine) -> None:
    ids = _entries(app_engine, 2, action="sdkexport.")
    with tme.Client(live_url) as client:
        text = client.audit.export(action="sdkexport.", actor="script")
    header, *rows = text.splitlines()
    assert header == "id,at,actor,action,target,outcome,client,details,hash"
    assert [int(row.split(",")[0]) for row in rows] == ids[::-1]


def test_audit_is_refused_to_a_non_admin(live_url: str, make_token: Callable[..., str]) -> None:
    with tme.Client(live_url, token=make_token("operator")) as client:
        with pytest.raises(Forbidden):
            list(client.audit.list())
        with pytest.raises(Forbidden):
            client.audit.export()


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"outcome": "maybe"}, "outcome"),
        ({"actor": ""}, "actor"),
        ({"action": "x" * 65}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-02T00:00:00", "until": "2026-01-01T00:00:00+00:00"}, "since"),
        ({"page_size": 0}, "page_size"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_audit_refuses_a_filter_the_server_would_before_any_request(
    closed_port_url: str, arguments: dict[str, object], field: str
) -> None:
    with tme.Client(closed_port_url, token="t") as client, pytest.raises(ValidationError) as caught:
        next(client.audit.list(**arguments))  # type: ignore[arg-type]
    assert [e["field"] for e in caught.value.field_errors] == [field]


def _delivery(engine: Engine, status: str) -> int:
    with session_scope(engine) as session:
        row = NotificationDelivery(
            dedup_key=f"rule:1|sdk-{status}", rule="rule:1", channel="email",
            target="ops@example.com", event="failed", site="plant-1", status=status,
        )  # fmt: skip
        session.add(row)
        session.flush()
        assert row.id is not None
        return row.id


def test_notification_rules_are_made_listed_and_deleted(live_url: str) -> None:
    with tme.Client(live_url) as client:
        made = client.notifications.create_rule(
            {"name": "ops mail", "channel": "email"}, target="ops@example.com", site="plant-1"
        )
        assert isinstance(made, NotificationRulePublic)
        assert (made.site, made.events, made.signed) == (
            "plant-1",
            ["failed", "timed_out", "lost"],
            False,
        )
        assert [r.id for r in client.notifications.rules()] == [made.id]
        client.notifications.delete_rule(made.id)
        assert client.notifications.rules() == []
        with pytest.raises(NotFound):
            client.notifications.delete_rule(made.id)


def test_notification_deliveries_are_read_by_status(live_url: str, app_engine: Engine) -> None:
    failed, delivered = _delivery(app_engine, "failed"), _delivery(app_engine, "delivered")
    with tme.Client(live_url) as client:
        listed = client.notifications.deliveries()
        only_failed = client.notifications.deliveries(status="failed")
    assert [d.id for d in listed] == [delivered, failed]
    assert isinstance(only_failed[0], NotificationDeliveryPublic)
    assert [(d.id, d.event, d.target) for d in only_failed] == [
        (failed, "failed", "ops@example.com")
    ]


def test_notification_rules_are_refused_to_a_viewer(
    live_url: str, make_token: Callable[..., str]
) -> None:
    with tme.Client(live_url, token=make_token("viewer")) as client, pytest.raises(Forbidden):
        client.notifications.create_rule(name="mail", channel="email", target="a@example.com")


def test_the_server_refuses_a_webhook_to_a_refused_network(live_url: str) -> None:
    """A target the SDK cannot judge (where the host is) is the server's 422, as the
    same ValidationError naming the field."""
    with tme.Client(live_url) as client, pytest.raises(ValidationError) as caught:
        client.notifications.create_rule(
            name="hook", channel="webhook", target="http://127.0.0.1:9/hook"
        )
    assert caught.value.status_code == 422
    assert [e["field"] for e in caught.value.field_errors] == ["target"]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda n: n.create_rule(name="x", channel="sms", target="a@example.com"), "channel"),
        (lambda n: n.create_rule(name="x", channel="email", target="a", colour="red"), "colour"),
        (lambda n: n.delete_rule("first"), "rule_id"),
        (lambda n: n.deliveries(status="sent"), "status"),
        (lambda n: n.deliveries(limit=1001), "limit"),
    ],
)
def test_notifications_refuse_bad_arguments_before_any_request(
    closed_port_url: str, call: Callable[..., object], field: str
) -> None:
    with tme.Client(closed_port_url, token="t") as client, pytest.raises(ValidationError) as caught:
        call(client.notifications)
    assert [e["field"] for e in caught.value.field_errors] == [field]


async def test_the_async_client_reads_the_same(live_url: str, app_engine: Engine) -> None:
    ids = _entries(app_engine, 3, action="sdkasync.")
    async with tme.AsyncClient(live_url) as client:
        me = await client.auth.me()
        listed = [e.id async for e in client.audit.list(action="sdkasync.", page_size=2)]
        text = await client.audit.export(action="sdkasync.")
        made = await client.notifications.create_rule(
            name="mail", channel="email", target="a@example.com"
        )
        rules = await client.notifications.rules()
        await client.notifications.delete_rule(made.id)
        with pytest.raises(NotFound):
            await client.notifications.delete_rule(made.id)
        assert await client.notifications.deliveries(status="pending") == []
    assert me.role == "admin"
    assert listed == ids[::-1]
    assert len(text.splitlines()) == 4
    assert [r.id for r in rules] == [made.id]
