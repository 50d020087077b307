"""/api/v1: tasks list (filters, pages), get, patch, delete, runs, idempotency, health, docs."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_error
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tme.controller.store.db import make_engine

DEVICE = {"site": "north", "agent": "a1", "device": "pump1"}


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/v1/tasks", json={"name": "task", **fields})
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/api/v1/tasks/{response.json()['id']}"
    return response.json()


def ids(client: TestClient, **params: Any) -> list[int]:
    """Every id of a filtered listing, following next_cursor page by page."""
    found: list[int] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/tasks", params=query)
        assert page.status_code == 200, page.text
        found.extend(t["id"] for t in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found


def scheduled(**fields: Any) -> dict[str, Any]:
    """A machine task that waits for its schedule, so nothing is dispatched meanwhile."""
    return {"schedule": {"every_s": 3600}, **fields}


def test_list_filters_and_pages(test_client: TestClient) -> None:
    a = create(
        test_client,
        name="Tank level",
        **scheduled(op="modbus.read", target=DEVICE, params={"point": "level"}),
    )["id"]
    b = create(
        test_client,
        name="pump speed",
        description="tank pump",
        **scheduled(
            op="modbus.write",
            target={**DEVICE, "agent": "a2"},
            params={"point": "speed", "value": 3},
        ),
    )["id"]
    c = create(
        test_client,
        name="wait",
        **scheduled(op="sleep", target={"site": "south", "agent": "a1"}, params={"seconds": 1}),
    )["id"]
    d = create(test_client, name="manual")["id"]
    assert ids(test_client, limit=1) == [d, c, b, a]
    assert ids(test_client, site="north", limit=1) == [b, a]
    assert ids(test_client, agent="a1") == [c, a]
    assert ids(test_client, op="sleep") == [c]
    assert ids(test_client, q="TANK", limit=1) == [b, a]
    assert ids(test_client, status="pending") == [d]
    assert ids(test_client, status="idle", site="north") == [b, a]
    assert ids(test_client, site="nowhere") == []
    page = test_client.get("/api/v1/tasks", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]


def test_a_filter_value_that_matches_no_task_is_refused_by_name(test_client: TestClient) -> None:
    """`status=bogus` answered an empty list, as if no task had that status."""
    create(test_client, name="listed")
    answer = test_client.get("/api/v1/tasks", params={"status": "runing"})
    error = assert_error(answer, 422, "status", "'runing'", 'did you mean "running"')
    assert [d["field"] for d in error["details"]] == ["status"]
    assert "one of: idle, pending, waiting" in error["details"][0]["message"]
    assert_error(test_client.get("/tasks/", params={"status": "bogus"}), 422, "status", "one of")
    answer = test_client.get("/api/v1/tasks", params={"op": "modbus.reed"})
    error = assert_error(answer, 422, "op", "'modbus.read'", "'serial.command'")
    assert [d["field"] for d in error["details"]] == ["op"]


def test_the_report_words_filter_their_state(test_client: TestClient) -> None:
    """complete, fail and started name the state they report, as the SDK sends them."""
    done, failed = create(test_client, name="done")["id"], create(test_client, name="f")["id"]
    untouched = create(test_client, name="untouched")["id"]
    for task_id, word in ((done, "complete"), (failed, "fail")):
        assert test_client.put(f"/task/{task_id}/", json={"status": word}).status_code == 200
    assert ids(test_client, status="complete") == ids(test_client, status="succeeded") == [done]
    assert ids(test_client, status="fail") == [failed]
    seed = test_client.get("/tasks/", params={"status": "complete"})
    assert [task["id"] for task in seed.json()] == [done]
    assert ids(test_client, status="") == [untouched, failed, done]  # an empty filter: none


UNKNOWN_QUERY = {
    "tasks, misspelt": ("GET", "/api/v1/tasks?stauts=failed", "stauts", "did you mean 'status'?"),
    "tasks, far off": (
        "GET",
        "/api/v1/tasks?colour=red",
        "colour",
        "this path takes status, site, agent, op, q, limit, cursor",
    ),
    "a task's runs": ("GET", "/api/v1/tasks/{task}/runs?limt=5", "limt", "'limit'"),
    "one task": ("GET", "/api/v1/tasks/{task}?full=1", "full", "this path takes none"),
    "sites": ("GET", "/api/v1/sites?site=plant-1", "site", "this path takes none"),
    "agents": ("GET", "/api/v1/agents?onlin=true", "onlin", "'online'"),
    "devices": ("GET", "/api/v1/devices?agnet=a1", "agnet", "'agent'"),
    "audit": ("GET", "/api/v1/audit?befor_id=3", "befor_id", "'before_id'"),
    "audit csv": ("GET", "/api/v1/audit.csv?outcom=ok", "outcom", "'outcome'"),
    "report": ("GET", "/api/v1/reports/summary?day=3", "day", "'days'"),
    "deliveries": ("GET", "/api/v1/notifications/deliveries?stat=failed", "stat", "'status'"),
    "a change": ("POST", "/api/v1/tasks/{task}/pause?force=true", "force", "takes none"),
    "cancel": ("POST", "/api/v1/runs/not-a-run/cancel?forse=true", "forse", "'force'"),
}


@pytest.mark.parametrize(
    ("method", "path", "name", "hint"), list(UNKNOWN_QUERY.values()), ids=list(UNKNOWN_QUERY)
)
def test_a_query_parameter_the_route_does_not_take_is_refused_by_name(
    test_client: TestClient, method: str, path: str, name: str, hint: str
) -> None:
    """It was ignored: `?stauts=failed` listed every task, `?forse=true` did not force."""
    task = create(test_client, name="paused?")["id"]
    answer = test_client.request(method, path.format(task=task))
    error = assert_error(answer, 422, f"{name}: unknown query parameter", hint)
    assert error["code"] == "validation_error"
    [detail] = error["details"]
    assert (detail["field"], detail["type"]) == (name, "extra_forbidden")
    assert detail["message"].startswith("unknown query parameter; ") and hint in detail["message"]
    assert test_client.get(f"/api/v1/tasks/{task}").json()["paused"] is False  # nothing ran


def test_every_parameter_a_route_takes_passes(test_client: TestClient) -> None:
    """Declared parameters and pages pass (the event stream's, which its dependencies
    declare: tests/notify/test_events_stream.py); paths outside /api/v1 (the seed's,
    the docs, the probes) are not concerned."""
    for _ in range(3):
        create(test_client)
    first = test_client.get("/api/v1/tasks", params={"limit": 2, "status": "pending", "q": "t"})
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    rest = test_client.get("/api/v1/tasks", params={"limit": 2, "cursor": cursor})
    assert rest.status_code == 200 and len(rest.json()["items"]) == 1, rest.text
    audit = test_client.get("/api/v1/audit", params={"limit": 1, "outcome": "ok"}).json()
    older = {"limit": 1, "before_id": audit["next_before_id"], "format": "csv"}
    assert test_client.get("/api/v1/audit", params=older).status_code == 200
    for path in (
        "/api/v1/agents?site=plant-1&online=false",
        "/api/v1/devices?site=plant-1&agent=a1",
        "/api/v1/reports/summary?days=3&group_by=site",
        "/api/v1/notifications/deliveries?status=failed&limit=5",
        "/tasks/?status=pending&colour=red",
        "/openapi.json?v=1",
        "/healthz?probe=1",
    ):
        assert test_client.get(path).status_code == 200, path
    spec = test_client.get("/openapi.json").json()
    assert "422" in spec["paths"]["/api/v1/sites"]["get"]["responses"]


def test_get_patch_delete(test_client: TestClient) -> None:
    task = create(test_client, description="first")
    url = f"/api/v1/tasks/{task['id']}"
    assert test_client.get(url).json() == task
    patched = test_client.patch(url, json={"description": "second", "timeout_s": 5})
    assert patched.status_code == 200
    assert patched.json()["description"] == "second" and patched.json()["timeout_s"] == 5
    assert patched.json()["updated_at"] > task["updated_at"]
    assert test_client.get(url).json()["description"] == "second"
    cleared = test_client.patch(url, json={"timeout_s": None}).json()
    assert cleared["timeout_s"] is None
    assert test_client.delete(url).status_code == 204
    assert_error(test_client.get(url), 404, "does not exist")
    assert_error(test_client.delete(url), 404)


def test_runs_and_run_detail(test_client: TestClient) -> None:
    task = create(test_client)
    legacy = f"/task/{task['id']}/"
    test_client.put(legacy, json={"status": "started"})
    test_client.put(legacy, json={"status": "complete"})
    for _ in range(2):
        test_client.put(legacy, json={"status": "started"})
        test_client.put(legacy, json={"status": "fail", "log": "bad"})
    url = f"/api/v1/tasks/{task['id']}/runs"
    first = test_client.get(url, params={"limit": 2}).json()
    assert [r["attempt"] for r in first["items"]] == [3, 2]
    rest = test_client.get(url, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [r["attempt"] for r in rest["items"]] == [1] and rest["next_cursor"] is None
    assert [r["state"] for r in first["items"] + rest["items"]] == ["failed", "failed", "succeeded"]
    detail = test_client.get(f"/api/v1/runs/{first['items'][0]['id']}").json()
    assert detail["task_id"] == task["id"]
    assert [e["to_state"] for e in detail["events"]] == ["pending", "running", "failed"]
    assert [line["line"] for line in detail["log"]] == ["bad"]
    assert_error(test_client.get("/api/v1/runs/no-such-run"), 404, "no-such-run")
    assert_error(test_client.get("/api/v1/tasks/987654/runs"), 404, "task 987654")


def test_idempotency_key(test_client: TestClient, counts: Callable[[], dict[str, int]]) -> None:
    body = {"name": "once", "params": {"batch": 7}}
    headers = {"Idempotency-Key": "order-42"}
    first = test_client.post("/api/v1/tasks", json=body, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    before = counts()
    again = test_client.post("/tasks/create", json=body, headers=headers)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert counts() == before  # no second row anywhere
    other = test_client.post("/api/v1/tasks", json={**body, "name": "twice"}, headers=headers)
    error = assert_error(other, 409, "idempotency-key", "different request body")
    assert error["details"] == {"idempotency_key": "order-42", "task_id": first.json()["id"]}
    assert counts() == before


def test_idempotency_keys_are_each_users_own(
    test_client: TestClient, app_engine: Any, counts: Callable[[], dict[str, int]]
) -> None:
    """Two users (here of two sites) sending the same key neither replay nor block each
    other, and neither learns of the other's task; a batch key does not collide with a
    single key spelled like one of its items (`bb` item 0 and `bb:0`)."""
    from tme.controller.services.bootstrap import make_user_with_token

    def bearer(site: str) -> dict[str, str]:
        token = make_user_with_token(app_engine, f"op-{site}", "operator", site).token
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": "shift-1"}

    ids = []
    for site, headers in (("site-a", bearer("site-a")), ("site-b", bearer("site-b"))):
        body = {"name": f"read at {site}", "op": "noop", "target": {"site": site, "agent": "a"}}
        made = test_client.post("/api/v1/tasks", json=body, headers=headers)
        assert made.status_code == 201, made.text
        assert "idempotent-replayed" not in made.headers
        again = test_client.post("/api/v1/tasks", json=body, headers=headers)
        assert again.json()["id"] == made.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        ids.append(made.json()["id"])
    assert ids[0] != ids[1]

    batch = {"tasks": [{"name": "item 0"}]}
    keyed = test_client.post("/api/v1/tasks/batch", json=batch, headers={"Idempotency-Key": "bb"})
    assert keyed.status_code == 201
    single = {"name": "not an item"}
    alone = test_client.post("/api/v1/tasks", json=single, headers={"Idempotency-Key": "bb:0"})
    assert alone.status_code == 201, alone.text
    assert "idempotent-replayed" not in alone.headers


def test_health_and_readiness(test_client: TestClient) -> None:
    assert test_client.get("/healthz").json() == {"status": "ok"}
    ready = test_client.get("/readyz")  # more in test_health_probes.py
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready" and ready.json()["checks"]["database"] == "ok"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_unreachable(app: FastAPI, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(app, headers=headers) as client:
        down = make_engine(f"postgresql://postgres@127.0.0.1:{_closed_port()}/tme")
        real, app.state.engine = app.state.engine, down
        try:
            assert client.get("/healthz").status_code == 200  # alive, just not ready
            listing = client.get("/api/v1/tasks")
            assert_error(listing, 503, "database is unavailable")
            assert listing.headers["retry-after"] == "5"
            assert_error(client.post("/tasks/create", json={"name": "x"}), 503)
        finally:
            app.state.engine = real
            down.dispose()
        assert client.get("/readyz").status_code == 200


def test_openapi_and_docs(test_client: TestClient) -> None:
    spec = test_client.get("/openapi.json").json()
    assert spec["info"]["title"] == "TME"
    for path in (
        "/api/v1/tasks",
        "/api/v1/tasks/{task_id}",
        "/api/v1/runs/{run_id}",
        "/tasks/create",
        "/tasks/",
        "/task/{task_id}/",
        "/healthz",
        "/readyz",
    ):
        assert path in spec["paths"], path
    assert "TaskCreate" in spec["components"]["schemas"]
    docs = test_client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
