"""A slash sent as %2F inside an id or name of a path is a 4xx naming the parameter,
before any route runs: the path was decoded before routing, so `/api/v1/tasks/1%2Frun`
ran task 1, `/api/v1/tasks%2F1` answered task 1, `/api/v1/workflows/a%2Fcancel`
canceled workflow run `a`, and a device `plant-1%2Fpump1` was "no such path"."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from tme.controller.api.slash_guard import slash_refusal

IN_A_PARAMETER = {
    "task, run now": ("POST", "/api/v1/tasks/1%2Frun", "task_id", "1/run"),
    "task, read": ("GET", "/api/v1/tasks/1%2F..", "task_id", "1/.."),
    "task, lower case": ("GET", "/api/v1/tasks/1%2fruns", "task_id", "1/runs"),
    "task, update": ("PATCH", "/api/v1/tasks/1%2F2", "task_id", "1/2"),
    "task, delete": ("DELETE", "/api/v1/tasks/1%2F2", "task_id", "1/2"),
    "the seed's task": ("DELETE", "/task/1%2F..", "task_id", "1/.."),
    "run": ("GET", "/api/v1/runs/a%2Fb", "run_id", "a/b"),
    "run, cancel": ("POST", "/api/v1/runs/a%2Fb/cancel", "run_id", "a/b"),
    "workflow, cancel": ("POST", "/api/v1/workflows/a%2Fcancel", "workflow_id", "a/cancel"),
    "device values": (
        "GET", "/api/v1/devices/plant-1%2Fskid-a/values", "device", "plant-1/skid-a",
    ),
    "device stop": ("POST", "/api/v1/devices/a%2Fb/stop", "device", "a/b"),
    "trigger": ("POST", "/api/v1/triggers/batch%2Fone", "name", "batch/one"),
    "rollout": ("GET", "/api/v1/rollouts/1%2F2", "rollout_id", "1/2"),
    "notification rule": ("DELETE", "/api/v1/notifications/rules/1%2F2", "rule_id", "1/2"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "field", "value"), IN_A_PARAMETER.values(), ids=list(IN_A_PARAMETER)
)
def test_an_encoded_slash_in_an_id_or_name_is_refused_naming_it(
    test_client: TestClient,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    field: str,
    value: str,
) -> None:
    test_client.post("/api/v1/tasks", json={"name": "kept"})
    before = counts()
    error = assert_error(test_client.request(method, path), 422, field, "%2F")
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]
    assert f"{value!r} holds a '/'" in error["details"][0]["message"]
    assert counts() == before
    assert test_client.get("/api/v1/tasks/1").json()["name"] == "kept"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/tasks%2F1"), ("POST", "/api/v1%2Ftasks"), ("GET", "/api/v1/runs%2F")],
)
def test_an_encoded_slash_between_fixed_segments_is_no_path(
    test_client: TestClient, counts: Callable[[], dict[str, int]], method: str, path: str
) -> None:
    test_client.post("/api/v1/tasks", json={"name": "kept"})
    before = counts()
    answer = test_client.request(method, path, json={"name": "never made"})
    error = assert_error(answer, 404, "no such path", "%2F")
    assert error["details"] == {"path": path}
    assert counts() == before


def test_a_path_without_an_encoded_slash_is_routed_as_before(test_client: TestClient) -> None:
    made = test_client.post("/api/v1/tasks", json={"name": "kept"}).json()
    assert test_client.get(f"/api/v1/tasks/{made['id']}").status_code == 200


def test_a_mounted_app_and_a_path_parameter_route_their_own_slashes() -> None:
    """The dashboard is mounted: it, and a `{name:path}` parameter, take a %2F."""

    async def nothing(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        return None

    routes = [Mount("/ui", app=nothing), Route("/files/{name:path}", nothing)]
    for raw in (b"/ui/tasks/1%2F2", b"/files/a%2Fb"):
        scope = {"type": "http", "method": "GET", "path": "", "root_path": "", "raw_path": raw}
        assert slash_refusal(scope, routes) is None
