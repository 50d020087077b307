"""A principal scoped to sites reads and acts on its sites only, beyond the fleet lists:
reports (JSON and CSV), notification rules and deliveries, and named triggers."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from security_helpers import SITE_A, SITE_B
from sqlmodel import Session, func, select

from tme.controller.notifications.models import NotificationDelivery, NotificationRule
from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, utcnow
from tme.schemas import TaskCreate


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _finished_run(engine: Any, site: str, outcome: str = "failed") -> int:
    body = TaskCreate.model_validate(
        {"name": f"read at {site}", "op": "noop", "target": {"site": site, "agent": "skid"}}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        start = utcnow() - timedelta(seconds=5)
        run_service.transition(session, run, "queued")
        run_service.transition(session, run, "running", at=start)
        run_service.transition(session, run, outcome, reason=f"{site} broke", at=utcnow())
        session.commit()
        return task.id or 0


# --- reports --------------------------------------------------------------------


def test_reports_count_only_granted_sites(anonymous, app_engine, make_token) -> None:  # type: ignore[no-untyped-def]
    _finished_run(app_engine, SITE_A)
    _finished_run(app_engine, SITE_B)
    admin = bearer(make_token("admin"))
    viewer = bearer(make_token("viewer", SITE_A))
    params = {"group_by": "site"}

    everything = anonymous.get("/api/v1/reports/summary", params=params, headers=admin).json()
    assert {g["key"] for g in everything["groups"]} == {SITE_A, SITE_B}

    mine = anonymous.get("/api/v1/reports/summary", params=params, headers=viewer).json()
    assert {g["key"] for g in mine["groups"]} == {SITE_A}
    assert [r["reason"] for r in mine["top_failure_reasons"]] == [f"{SITE_A} broke"]
    assert sum(h["runs"] for h in mine["busiest_hours"]) == 1

    answer = anonymous.get("/api/v1/reports/summary.csv", params=params, headers=viewer)
    assert answer.status_code == 200
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert [r["site"] for r in rows] == [SITE_A]


# --- notifications ------------------------------------------------------------


def _rule(client: TestClient, headers: dict[str, str], **fields: Any) -> Any:
    body = {"name": f"r-{uuid.uuid4().hex[:6]}", "channel": "webhook", "target": "http://h/x"}
    return client.post("/api/v1/notifications/rules", json={**body, **fields}, headers=headers)


def test_notification_rules_are_scoped_to_granted_sites(anonymous, app_engine, make_token) -> None:  # type: ignore[no-untyped-def]
    task_a = _finished_run(app_engine, SITE_A, "succeeded")
    task_b = _finished_run(app_engine, SITE_B, "succeeded")
    admin = bearer(make_token("admin"))
    engineer_a = bearer(make_token("engineer", SITE_A))

    on_b = _rule(anonymous, admin, task_id=task_b)
    assert on_b.status_code == 201 and on_b.json()["site"] == SITE_B
    everywhere = _rule(anonymous, admin)
    assert everywhere.status_code == 201 and everywhere.json()["site"] is None

    # creating: another site's task is 404; a site outside the grant, or none, is 403
    assert _rule(anonymous, engineer_a, task_id=task_b).status_code == 404
    assert _rule(anonymous, engineer_a, site=SITE_B).status_code == 403
    assert _rule(anonymous, engineer_a).status_code == 403
    assert _rule(anonymous, engineer_a, task_id=task_a, site=SITE_B).status_code == 422
    on_a = _rule(anonymous, engineer_a, task_id=task_a)
    assert on_a.status_code == 201 and on_a.json()["site"] == SITE_A
    site_a = _rule(anonymous, engineer_a, site=SITE_A, events=["agent_offline"])
    assert site_a.status_code == 201

    listed = anonymous.get("/api/v1/notifications/rules", headers=engineer_a).json()
    assert sorted(r["id"] for r in listed) == sorted([on_a.json()["id"], site_a.json()["id"]])
    all_rules = anonymous.get("/api/v1/notifications/rules", headers=admin).json()
    assert len(all_rules) == 4

    # deleting another site's rule, or a rule of every site: as if it did not exist
    for rule in (on_b, everywhere):
        url = f"/api/v1/notifications/rules/{rule.json()['id']}"
        assert anonymous.delete(url, headers=engineer_a).status_code == 404
    with Session(app_engine) as session:
        assert session.exec(select(func.count()).select_from(NotificationRule)).one() == 4
    url = f"/api/v1/notifications/rules/{on_a.json()['id']}"
    assert anonymous.delete(url, headers=engineer_a).status_code == 204


def test_notification_deliveries_are_scoped_to_granted_sites(
    anonymous, app_engine, make_token
) -> None:  # type: ignore[no-untyped-def]
    with Session(app_engine) as session:
        for site in (SITE_A, SITE_B, None):
            session.add(
                NotificationDelivery(
                    dedup_key=f"test|{site}",
                    rule="rule:1",
                    channel="webhook",
                    target="http://h/x",
                    event="failed",
                    site=site,
                    payload={"event": "failed", "run": {"site": site}},
                )
            )
        session.commit()
    viewer_a = bearer(make_token("viewer", SITE_A))
    mine = anonymous.get("/api/v1/notifications/deliveries", headers=viewer_a).json()
    assert [d["site"] for d in mine] == [SITE_A]
    admin = bearer(make_token("admin"))
    every = anonymous.get("/api/v1/notifications/deliveries", headers=admin).json()
    assert sorted(str(d["site"]) for d in every) == sorted([SITE_A, SITE_B, "None"])


# --- triggers -------------------------------------------------------------------


def _run_count(engine: Any) -> int:
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Run)).one())


def test_a_scoped_trigger_starts_only_the_granted_sites_tasks(  # type: ignore[no-untyped-def]
    anonymous, app_engine, make_token
) -> None:
    """Trigger names are shared by every site: a task of site B bound to site A's name
    must not block A's trigger, nor be started by it, nor tell A that it exists."""
    admin = bearer(make_token("admin"))
    operator_a = bearer(make_token("operator", SITE_A))
    operator_b = bearer(make_token("operator", SITE_B))
    trigger = f"mixed-{uuid.uuid4().hex[:6]}"
    only_a = f"only-a-{uuid.uuid4().hex[:6]}"
    made = {}
    for name in (trigger, only_a):
        body = {"name": f"on {SITE_A}", "target": {"site": SITE_A}, "trigger": name}
        answer = anonymous.post("/api/v1/tasks", json=body, headers=operator_a)
        assert answer.status_code == 201
        made[name] = answer.json()["id"]
    squatter = {"name": "on b", "target": {"site": SITE_B}, "trigger": trigger}
    assert anonymous.post("/api/v1/tasks", json=squatter, headers=operator_b).status_code == 201
    before = _run_count(app_engine)

    fired = anonymous.post(f"/api/v1/triggers/{trigger}", headers=operator_a)
    assert fired.status_code == 200, fired.text
    assert [r["task_id"] for r in fired.json()["runs"]] == [made[trigger]]
    assert SITE_B not in fired.text
    assert _run_count(app_engine) == before + 1

    unknown = anonymous.post("/api/v1/triggers/nothing-bound-here", headers=operator_b)
    other = anonymous.post(f"/api/v1/triggers/{only_a}", headers=operator_b)
    assert (other.status_code, other.json()["runs"]) == (unknown.status_code, []) == (200, [])
    assert _run_count(app_engine) == before + 1

    everything = anonymous.post(f"/api/v1/triggers/{trigger}", headers=admin)
    assert everything.status_code == 200 and len(everything.json()["runs"]) == 2
    assert _run_count(app_engine) == before + 3
