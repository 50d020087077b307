"""A body sent to a route that takes none (run now, pause, cancel, a trigger, ...) is
refused with 422 naming what it held, and nothing is done: it was ignored, so
`{"force": true}` to cancel asked the agent instead of marking the run canceled, and
`{"params": ...}` to run now ran the task with its stored params, both answered as done.
A body of nothing, `{}` or `null` still passes."""

from __future__ import annotations

from collections.abc import Callable

from api_helpers import assert_error
from fastapi.testclient import TestClient

JSON = {"Content-Type": "application/json"}


def test_a_field_in_the_body_of_cancel_or_run_now_is_refused_and_nothing_done(
    test_client: TestClient, counts: Callable[[], dict[str, int]]
) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "external work"}).json()
    run_id = test_client.get(f"/api/v1/tasks/{task['id']}/runs").json()["items"][0]["id"]
    before = counts()

    cancel = test_client.post(f"/api/v1/runs/{run_id}/cancel", json={"force": True})
    error = assert_error(cancel, 422, "force", "no body", "?force=")
    assert [f["field"] for f in error["details"]] == ["force"]
    run_now = test_client.post(f"/api/v1/tasks/{task['id']}/run", json={"params": {"a": 1}})
    assert [f["field"] for f in assert_error(run_now, 422, "params")["details"]] == ["params"]
    text = test_client.post("/api/v1/triggers/nightly", content=b"go", headers=JSON)
    assert [f["field"] for f in assert_error(text, 422, "no body")["details"]] == ["body"]

    assert counts() == before
    assert test_client.get(f"/api/v1/runs/{run_id}").json()["state"] == "pending"


def test_an_empty_body_still_passes(test_client: TestClient) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "paused"}).json()
    url = f"/api/v1/tasks/{task['id']}/pause"
    for body in (b"", b"{}", b"null", b" {} \n"):
        answer = test_client.post(url, content=body, headers=JSON)
        assert answer.status_code == 200, (body, answer.text)
    assert test_client.post(url).status_code == 200
