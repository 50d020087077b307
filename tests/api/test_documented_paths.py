"""The seed's documented paths, exactly: /tasks/create, /tasks/, /task/<id>/."""

from __future__ import annotations

from typing import Any

from api_helpers import assert_error
from fastapi.testclient import TestClient


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/tasks/create", json={"name": "report", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_answers_201_with_the_new_id(test_client: TestClient) -> None:
    first = create(test_client, assigned_to="ops")
    second = create(test_client, name="second")
    assert isinstance(first["id"], int) and second["id"] > first["id"]
    assert first["status"] == "pending" and first["assigned_to"] == "ops"
    got = test_client.get(f"/api/v1/tasks/{first['id']}")
    assert got.status_code == 200 and got.json()["name"] == "report"


def test_list_has_the_seed_fields(test_client: TestClient) -> None:
    made = create(
        test_client,
        name="read tank",
        op="modbus.read",
        target={"site": "plant-1", "agent": "skid-a", "device": "tank1"},
        params={"point": "level"},
        schedule={"every_s": 60},
        assigned_to="night shift",
    )
    response = test_client.get("/tasks/")
    assert response.status_code == 200
    rows = response.json()
    assert isinstance(rows, list) and len(rows) == 1
    row = rows[0]
    for key in (
        "id",
        "name",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "assigned_to",
        "target",
    ):
        assert key in row, key
    assert row["id"] == made["id"] and row["assigned_to"] == "night shift"
    assert row["target"] == {"site": "plant-1", "agent": "skid-a", "device": "tank1"}
    assert row["created_at"].endswith("Z") or row["created_at"].endswith("+00:00")


def test_put_and_patch_update_fields(test_client: TestClient) -> None:
    task = create(test_client)
    for method, name in (("PUT", "by put"), ("PATCH", "by patch")):
        response = test_client.request(
            method, f"/task/{task['id']}/", json={"name": name, "assigned_to": method}
        )
        assert response.status_code == 200, response.text
        assert response.json()["name"] == name
        assert test_client.get(f"/api/v1/tasks/{task['id']}").json()["assigned_to"] == method
    # without the trailing slash too
    assert test_client.put(f"/task/{task['id']}", json={"priority": 1}).json()["priority"] == 1


def test_status_words_map_to_run_states(test_client: TestClient) -> None:
    task = create(test_client)
    url = f"/task/{task['id']}/"
    started = test_client.put(url, json={"status": "started"}).json()
    assert started["status"] == "running" and started["started_at"] is not None
    assert started["finished_at"] is None
    done = test_client.patch(url, json={"status": "complete", "log": "all good"}).json()
    assert done["status"] == "succeeded" and done["finished_at"] is not None
    assert done["latest_run_id"] == task["latest_run_id"]

    # starting again after a final state is a new run (attempt 2)
    again = test_client.put(url, json={"status": "started"}).json()
    assert again["status"] == "running" and again["latest_run_id"] != task["latest_run_id"]
    failed = test_client.put(
        url,
        json={
            "status": "fail",
            "log": "step 1 ok\nstep 2: pressure low",
            "details": {"reason": "pressure low", "bar": 0.4},
        },
    ).json()
    assert failed["status"] == "failed"

    run = test_client.get(f"/api/v1/runs/{failed['latest_run_id']}").json()
    assert run["state"] == "failed" and run["attempt"] == 2
    assert run["reason"] == "pressure low"
    assert run["result"] == {"reason": "pressure low", "bar": 0.4}
    assert [(e["from_state"], e["to_state"]) for e in run["events"]] == [
        (None, "pending"),
        ("pending", "running"),
        ("running", "failed"),
    ]
    assert all(e["at"] and e["source"] == "api" for e in run["events"])
    assert [line["line"] for line in run["log"]] == ["step 1 ok", "step 2: pressure low"]

    first = test_client.get(f"/api/v1/runs/{task['latest_run_id']}").json()
    assert first["state"] == "succeeded" and [x["line"] for x in first["log"]] == ["all good"]
    runs = test_client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"]
    assert [r["attempt"] for r in runs] == [2, 1]


def test_delete_with_and_without_slash(test_client: TestClient) -> None:
    for suffix in ("", "/"):
        task = create(test_client)
        response = test_client.delete(f"/task/{task['id']}{suffix}")
        assert response.status_code == 204 and response.content == b""
        assert_error(test_client.delete(f"/task/{task['id']}{suffix}"), 404, "does not exist")
        assert_error(test_client.get(f"/api/v1/tasks/{task['id']}"), 404, f"task {task['id']}")
    assert test_client.get("/tasks/").json() == []


def test_tasks_without_slash(test_client: TestClient) -> None:
    """GET /tasks redirects to /tasks/ keeping the query; other methods are refused."""
    create(test_client, name="a")
    create(test_client, name="b")
    response = test_client.get("/tasks?limit=1", follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"].endswith("/tasks/?limit=1")
    followed = test_client.get("/tasks?limit=1")
    assert followed.status_code == 200 and [t["name"] for t in followed.json()] == ["b"]
    # POST /tasks is not a create path: it ends in a 405 with the error shape
    assert_error(test_client.post("/tasks", json={"name": "x"}), 405)
    assert len(test_client.get("/tasks/").json()) == 2


def test_link_header_pages(test_client: TestClient) -> None:
    ids = [create(test_client, name=f"t{i}")["id"] for i in range(7)]
    seen: list[int] = []
    url: str | None = "/tasks/?limit=3"
    pages = 0
    while url:
        response = test_client.get(url)
        assert response.status_code == 200
        seen.extend(t["id"] for t in response.json())
        pages += 1
        link = response.headers.get("link")
        if link is None:
            url = None
            continue
        assert link.endswith('>; rel="next"') and "limit=3" in link
        url = link[1 : link.index(">")]
        create(test_client, name="inserted while paging")
    assert pages == 3
    assert seen == sorted(ids, reverse=True)


def test_list_filters_by_status(test_client: TestClient) -> None:
    a = create(test_client)
    create(test_client)
    test_client.put(f"/task/{a['id']}/", json={"status": "started"})
    running = test_client.get("/tasks/", params={"status": "running"}).json()
    assert [t["id"] for t in running] == [a["id"]]


def test_get_one_task_with_and_without_slash(test_client: TestClient) -> None:
    # PUT, PATCH and DELETE take /task/<id> without the slash; GET answered it with a 405
    # saying GET is not allowed there, for a task it serves at /task/<id>/.
    task = create(test_client)
    for suffix in ("", "/"):
        response = test_client.get(f"/task/{task['id']}{suffix}")
        assert response.status_code == 200, response.text
        assert response.json()["id"] == task["id"]
        assert_error(test_client.get(f"/task/999999{suffix}"), 404, "does not exist")
