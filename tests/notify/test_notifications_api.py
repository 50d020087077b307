"""/api/v1/notifications: a rule's target is checked when the rule is made, and shown
whole only to callers who may manage that rule (a webhook URL is often a credential)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from notify_helpers import add_delivery

SITE_A, SITE_B = "site-a", "site-b"
GLOBAL_HOOK = "https://ops:hunter2@alerts.example.invalid/hook?token=global-t0ken"
SETTINGS_HOOK = "https://hooks.example.invalid/services/T000/settings-t0ken"
SITE_A_HOOK = "http://192.0.2.10:8080/site-a/site-a-t0ken"
PAGER = "oncall@plant.example, boss@plant.example"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rule(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "channel": "webhook", "events": ["failed"]}
    return client.post("/api/v1/notifications/rules", json={**body, **fields}, headers=headers)


BAD_TARGETS = {
    "bracket never closed": ("webhook", "http://[::1/hook"),
    "not http": ("webhook", "ftp://files.example/drop"),
    "no host": ("webhook", "http:///hook"),
    "relative": ("webhook", "/hook"),
    "host label over 63 characters": ("webhook", f"http://{'a' * 70}.example/hook"),
    "port out of range": ("webhook", "http://hooks.example:99999/hook"),
    "header injection": ("webhook", "http://hooks.example/hook\r\nX-Evil: 1"),
    "address with CR/LF": ("email", "ops@plant.example\r\nBcc: spy@evil.example"),
    "not an address": ("email", "ops"),
    "empty address in the list": ("email", "ops@plant.example,,"),
}


@pytest.mark.parametrize("channel,target", BAD_TARGETS.values(), ids=BAD_TARGETS)
def test_a_rule_with_a_target_no_sender_can_use_is_refused(
    test_client, channel: str, target: str
) -> None:
    response = _rule(test_client, {}, channel=channel, target=target)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert [f["field"] for f in error["details"]] == ["target"]
    assert "evil" not in response.text  # the target is not echoed back


@pytest.mark.parametrize("field", ["name", "site", "secret"])
def test_a_nul_in_a_rule_is_refused_naming_its_field(test_client, field: str) -> None:
    """PostgreSQL answered a 422 that named nothing; SQLite stored it."""
    response = _rule(test_client, {}, target=SITE_A_HOOK, **{field: "a\x00b"})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["details"]] == [field]
    assert test_client.get("/api/v1/notifications/rules").json() == []


@pytest.mark.parametrize("site", ["plant 1", "plant-1/#", "-plant", "p" * 65])
def test_a_rule_naming_a_site_no_task_can_have_is_refused(test_client, site: str) -> None:
    """It was stored, and watched a site that never reports."""
    response = _rule(test_client, {}, target=SITE_A_HOOK, site=site)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == "site"
    assert "is not a name a task can target (1 to 64 letters, digits" in detail["message"]
    assert test_client.get("/api/v1/notifications/rules").json() == []


@pytest.mark.parametrize(
    "channel,target",
    [
        ("webhook", "https://ops:pw@hooks.example/hook?token=1"),
        ("webhook", "http://192.0.2.10:8080/hook"),
        ("webhook", "http://[2001:db8::1]:8080/hook"),
        ("email", "ops@plant.example"),
        ("email", PAGER),
    ],
)
def test_a_usable_target_is_taken(test_client, channel: str, target: str) -> None:
    response = _rule(test_client, {}, channel=channel, target=target)
    assert response.status_code == 201, response.text
    assert response.json()["target"] == target


@pytest.fixture
def scoped(make_token) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    return {
        "admin": bearer(make_token("admin")),
        "engineer of every site": bearer(make_token("engineer")),
        "engineer of site A": bearer(make_token("engineer", SITE_A)),
        "operator of site A": bearer(make_token("operator", SITE_A)),
        "viewer of site A": bearer(make_token("viewer", SITE_A)),
    }


def test_deliveries_show_a_target_only_to_who_manages_its_rule(app, app_engine, scoped) -> None:  # type: ignore[no-untyped-def]
    """A delivery about site A may come from a global rule or a webhook of the settings
    file: a caller of site A sees where it went, not the URL's token."""
    with TestClient(app) as client:
        everywhere = _rule(client, scoped["admin"], target=GLOBAL_HOOK).json()
        own = _rule(client, scoped["engineer of site A"], site=SITE_A, target=SITE_A_HOOK).json()
        pager = _rule(client, scoped["admin"], site=SITE_A, channel="email", target=PAGER).json()
        # delivered already: the controller's notifier leaves them alone
        for rule, target, channel in (
            (f"rule:{everywhere['id']}", GLOBAL_HOOK, "webhook"),
            ("settings:webhook:0", SETTINGS_HOOK, "webhook"),
            (f"rule:{own['id']}", SITE_A_HOOK, "webhook"),
            (f"rule:{pager['id']}", PAGER, "email"),
            ("rule:999999", SITE_A_HOOK, "webhook"),  # a rule deleted since
        ):
            add_delivery(app_engine, rule, target, site=SITE_A, channel=channel, status="delivered")

        def targets_for(caller: str) -> dict[str, str]:
            response = client.get("/api/v1/notifications/deliveries", headers=scoped[caller])
            assert response.status_code == 200, response.text
            return {d["rule"]: d["target"] for d in response.json()}

        whole = {
            f"rule:{everywhere['id']}": GLOBAL_HOOK,
            "settings:webhook:0": SETTINGS_HOOK,
            f"rule:{own['id']}": SITE_A_HOOK,
            f"rule:{pager['id']}": PAGER,
            "rule:999999": SITE_A_HOOK,
        }
        redacted = {
            f"rule:{everywhere['id']}": "https://alerts.example.invalid/…",
            "settings:webhook:0": "https://hooks.example.invalid/…",
            f"rule:{own['id']}": "http://192.0.2.10:8080/…",
            f"rule:{pager['id']}": "…@plant.example, …@plant.example",
            "rule:999999": "http://192.0.2.10:8080/…",
        }
        assert targets_for("admin") == whole
        assert targets_for("engineer of every site") == whole
        # manages the rules of site A only: not a global rule, nor the settings file
        assert targets_for("engineer of site A") == {
            **redacted,
            f"rule:{own['id']}": SITE_A_HOOK,
            f"rule:{pager['id']}": PAGER,
        }
        for caller in ("operator of site A", "viewer of site A"):
            assert targets_for(caller) == redacted, caller


def test_rules_show_a_target_only_to_who_manages_them(app, scoped) -> None:  # type: ignore[no-untyped-def]
    with TestClient(app) as client:
        hook = _rule(client, scoped["admin"], site=SITE_A, target=SITE_A_HOOK).json()
        pager = _rule(client, scoped["admin"], site=SITE_A, channel="email", target=PAGER).json()
        _rule(client, scoped["admin"], site=SITE_B, target=GLOBAL_HOOK)

        def targets_for(caller: str) -> dict[int, str]:
            response = client.get("/api/v1/notifications/rules", headers=scoped[caller])
            assert response.status_code == 200, response.text
            return {r["id"]: r["target"] for r in response.json() if r["site"] == SITE_A}

        whole = {hook["id"]: SITE_A_HOOK, pager["id"]: PAGER}
        for caller in ("admin", "engineer of every site", "engineer of site A"):
            assert targets_for(caller) == whole, caller
        redacted = {
            hook["id"]: "http://192.0.2.10:8080/…",
            pager["id"]: "…@plant.example, …@plant.example",
        }
        for caller in ("operator of site A", "viewer of site A"):
            assert targets_for(caller) == redacted, caller
            listed = client.get("/api/v1/notifications/rules", headers=scoped[caller]).text
            assert "t0ken" not in listed and "oncall" not in listed


def test_deleting_a_task_deletes_the_rules_that_watch_it(test_client) -> None:
    """A rule of one task goes with its task: it was left listed for a task that no
    longer exists, could never fire on a run again, and still fired on its site's
    agents going offline."""
    task = test_client.post("/api/v1/tasks", json={"name": "watched"}).json()
    other = test_client.post("/api/v1/tasks", json={"name": "other"}).json()
    mine = _rule(test_client, {}, task_id=task["id"], target=SITE_A_HOOK).json()
    kept = _rule(test_client, {}, task_id=other["id"], target=SITE_A_HOOK).json()
    every = _rule(test_client, {}, target=SITE_A_HOOK).json()
    assert test_client.delete(f"/api/v1/tasks/{task['id']}").status_code == 204
    listed = test_client.get("/api/v1/notifications/rules").json()
    assert [r["id"] for r in listed] == [kept["id"], every["id"]]
    assert mine["id"] not in [r["id"] for r in listed]
