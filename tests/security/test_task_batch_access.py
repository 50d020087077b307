"""Site grants and roles hold for every item of POST /api/v1/tasks/batch: an item the
single create refuses refuses the whole batch with the same answer, naming the item, and
nothing is stored. The batch is audited as one change, like a single create."""

from __future__ import annotations

from typing import Any

import pytest
from security_helpers import SITE_A, SITE_B
from sqlmodel import col, func, select

from tme.controller.store.db import session_scope
from tme.controller.store.models import Task
from tme.controller.store.security_models import AuditEntry

URL = "/api/v1/tasks/batch"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _on(site: str | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"read tank on {site}", **fields}
    if site is not None:
        body["target"] = {"site": site}
    return body


def _tasks(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return int(session.exec(select(func.count()).select_from(Task)).one())


REFUSED_ITEMS = {
    "another site": _on(SITE_B),
    "no site": _on(None),
    "a schedule": _on(SITE_A, schedule={"every_s": 60}),
}


@pytest.mark.parametrize("refused", REFUSED_ITEMS.values(), ids=REFUSED_ITEMS.keys())
def test_an_item_the_single_create_refuses_refuses_the_batch(  # type: ignore[no-untyped-def]
    anonymous, app_engine, make_token, refused
) -> None:
    operator = _bearer(make_token("operator", SITE_A))
    single = anonymous.post("/api/v1/tasks", json=refused, headers=operator)
    assert single.status_code in (403, 404), single.text
    body = {"tasks": [_on(SITE_A), _on(SITE_A), refused]}
    batch = anonymous.post(URL, json=body, headers=operator)
    assert batch.status_code == single.status_code, batch.text
    error = batch.json()["error"]
    assert error["code"] == single.json()["error"]["code"]
    assert error["details"]["index"] == 2
    assert _tasks(app_engine) == 0
    granted = anonymous.post(URL, json={"tasks": [_on(SITE_A)] * 2}, headers=operator)
    assert granted.status_code == 201, granted.text
    assert _tasks(app_engine) == 2


def test_roles_without_task_write_may_not_send_a_batch(anonymous, app_engine, make_token) -> None:  # type: ignore[no-untyped-def]
    body = {"tasks": [_on(SITE_A)]}
    assert anonymous.post(URL, json=body).status_code == 401
    viewer = _bearer(make_token("viewer", SITE_A))
    assert anonymous.post(URL, json=body, headers=viewer).status_code == 403
    assert _tasks(app_engine) == 0


def test_a_batch_is_audited_as_one_change(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    test_client.post(URL, json={"tasks": [_on(SITE_A), _on(SITE_B), _on(None)]})
    test_client.post(URL, json={"tasks": [_on(SITE_A), {"name": ""}]})
    with session_scope(app_engine) as session:
        query = select(AuditEntry).where(col(AuditEntry.target) == f"POST {URL}")
        rows = list(session.exec(query.order_by(col(AuditEntry.id))).all())
    assert [(r.action, r.outcome) for r in rows] == [
        ("task.write:create_task_batch", "ok"),
        ("task.write:create_task_batch", "failed"),
    ]
    assert all(r.actor == "admin" and r.client for r in rows)
    assert rows[0].details["status"] == 201 and rows[0].details["fields"] == ["tasks"]
    assert rows[1].details["status"] == 422
