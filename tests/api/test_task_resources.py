"""A task's exclusive resources over the API: stored, shown, changed by PATCH, a bad
name refused with a 422 naming `resources`; a run waits for a resource another task's
run holds, and starts once that run has ended (the controller's workflow engine)."""

from __future__ import annotations

import pytest
from waiting import wait_until


def _field_errors(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 422, answer.text
    return [e["field"] for e in answer.json()["error"]["details"]]


def test_resources_are_stored_shown_and_changed(test_client) -> None:
    made = test_client.post(
        "/api/v1/tasks", json={"name": "fill", "resources": ["tank1", "cell-a"]}
    )
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    assert made.json()["resources"] == ["tank1", "cell-a"]
    assert test_client.get(f"/api/v1/tasks/{task_id}").json()["resources"] == ["tank1", "cell-a"]
    listed = test_client.get("/api/v1/tasks").json()["items"]
    assert [t["resources"] for t in listed if t["id"] == task_id] == [["tank1", "cell-a"]]
    changed = test_client.patch(f"/api/v1/tasks/{task_id}", json={"resources": ["rs485:line-2"]})
    assert changed.status_code == 200, changed.text
    assert test_client.get(f"/api/v1/tasks/{task_id}").json()["resources"] == ["rs485:line-2"]
    cleared = test_client.patch(f"/api/v1/tasks/{task_id}", json={"resources": []})
    assert cleared.json()["resources"] == []


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        (["tank 1"], "resources.0"),
        (["tank1", ""], "resources.1"),
        (["x" * 65], "resources.0"),
        (["tank/1"], "resources.0"),
        (["tank1", "tank1"], "resources"),
        ([f"r{i}" for i in range(9)], "resources"),
    ],
)
def test_a_bad_resource_is_refused_naming_it(test_client, resources, field) -> None:
    answer = test_client.post("/api/v1/tasks", json={"name": "bad", "resources": resources})
    assert _field_errors(answer) == [field]
    task_id = test_client.post("/api/v1/tasks", json={"name": "ok"}).json()["id"]
    answer = test_client.patch(f"/api/v1/tasks/{task_id}", json={"resources": resources})
    assert _field_errors(answer) == [field]


def test_a_run_waits_for_a_resource_held_by_another_task(test_client) -> None:
    flush = test_client.post("/api/v1/tasks", json={"name": "flush", "resources": ["tank1"]})
    fill = test_client.post("/api/v1/tasks", json={"name": "fill", "resources": ["tank1"]})
    flush_run, fill_run = flush.json()["latest_run_id"], fill.json()["latest_run_id"]
    waiting = test_client.get(f"/api/v1/runs/{fill_run}").json()
    assert waiting["state"] == "waiting"
    assert waiting["reason"] == (
        f"waiting for resource tank1, held by run {flush_run} of task {flush.json()['id']} (flush)"
    )
    early = test_client.patch(f"/api/v1/tasks/{fill.json()['id']}", json={"status": "started"})
    assert early.status_code == 409, early.text
    assert "waiting for resource tank1" in early.json()["error"]["message"]
    done = test_client.patch(f"/api/v1/tasks/{flush.json()['id']}", json={"status": "complete"})
    assert done.status_code == 200, done.text
    wait_until(
        lambda: test_client.get(f"/api/v1/runs/{fill_run}").json()["state"] == "queued",
        timeout=10,
        what="the fill's run to start once the flush's settled",
    )


def test_the_resources_list_says_who_holds_each_and_who_waits(test_client, make_token) -> None:  # type: ignore[no-untyped-def]
    def made(name: str, resources: list[str], site: str = "plant-a") -> dict:  # type: ignore[type-arg]
        body = {"name": name, "op": "external", "resources": resources}
        answer = test_client.post("/api/v1/tasks", json={**body, "target": {"site": site}})
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    far = made("far away", ["cell-a", "tool-9"], site="plant-b")
    flush = made("flush", ["tank1"])
    fill = made("fill", ["tank1", "cell-a"])
    drain = made("drain", ["tank1"])

    listed = {r["name"]: r for r in test_client.get("/api/v1/resources").json()}
    assert sorted(listed) == ["cell-a", "tank1", "tool-9"]
    tank = listed["tank1"]
    assert tank["tasks"] == sorted([flush["id"], fill["id"], drain["id"]])
    assert (tank["holder"]["run_id"], tank["holder"]["task_name"]) == (
        flush["latest_run_id"],
        "flush",
    )
    assert [w["run_id"] for w in tank["waiting"]] == [fill["latest_run_id"], drain["latest_run_id"]]
    # the fill waits for both of its resources, holding neither
    assert listed["cell-a"]["holder"]["task_id"] == far["id"]
    assert [w["run_id"] for w in listed["cell-a"]["waiting"]] == [fill["latest_run_id"]]
    assert listed["tool-9"]["waiting"] == []

    viewer = {"Authorization": f"Bearer {make_token('viewer', 'plant-a')}"}
    mine = {r["name"]: r for r in test_client.get("/api/v1/resources", headers=viewer).json()}
    assert sorted(mine) == ["cell-a", "tank1"]  # tool-9 is named on plant-b only
    assert mine["cell-a"]["holder"] is None and mine["cell-a"]["held_elsewhere"] is True
    assert mine["cell-a"]["tasks"] == [fill["id"]]

    def tank1_holder() -> int | None:
        (tank1,) = [r for r in test_client.get("/api/v1/resources").json() if r["name"] == "tank1"]
        return tank1["holder"]["task_id"] if tank1["holder"] else None

    test_client.patch(f"/api/v1/tasks/{flush['id']}", json={"status": "complete"})
    assert tank1_holder() is None  # free, but the fill is next and waits for cell-a too
    test_client.patch(f"/api/v1/tasks/{far['id']}", json={"status": "complete"})
    wait_until(lambda: tank1_holder() == fill["id"], timeout=10, what="the fill to hold tank1")


@pytest.mark.parametrize("path", ["/api/v1/tasks/{id}", "/task/{id}/"])
def test_deleting_the_holders_task_lets_the_waiting_run_start(test_client, path) -> None:
    flush = test_client.post("/api/v1/tasks", json={"name": "flush", "resources": ["tank1"]})
    fill = test_client.post("/api/v1/tasks", json={"name": "fill", "resources": ["tank1"]})
    fill_run = fill.json()["latest_run_id"]
    assert test_client.get(f"/api/v1/runs/{fill_run}").json()["state"] == "waiting"
    # The flush's run is pending (an external task not started): the task may go.
    gone = test_client.delete(path.format(id=flush.json()["id"]))
    assert gone.status_code == 204, gone.text
    assert test_client.get(f"/api/v1/runs/{fill_run}").json()["state"] == "queued"


def test_naming_a_resource_another_run_holds_while_a_run_is_going_is_a_409(test_client) -> None:
    flush = test_client.post("/api/v1/tasks", json={"name": "flush", "resources": ["tank1"]})
    fill = test_client.post("/api/v1/tasks", json={"name": "fill"})
    answer = test_client.patch(f"/api/v1/tasks/{fill.json()['id']}", json={"resources": ["tank1"]})
    assert answer.status_code == 409, answer.text
    assert f"resource tank1 is held by run {flush.json()['latest_run_id']}" in answer.text
    assert test_client.get(f"/api/v1/tasks/{fill.json()['id']}").json()["resources"] == []


def test_a_bad_resource_name_says_what_a_name_may_hold(test_client) -> None:  # type: ignore[no-untyped-def]
    answer = test_client.post("/api/v1/tasks", json={"name": "bad", "resources": ["tank 1"]})
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["error"]["details"]
    assert detail["field"] == "resources.0"
    assert (
        "'tank 1' is no resource name: 1 to 64 letters, digits, _ . : or -" in (detail["message"])
    )
    assert "pattern" not in answer.text  # no regular expression for the reader to decode
