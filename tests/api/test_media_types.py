"""Which bodies a JSON route reads: any JSON type, or none declared; anything else is a 415
that names the type to send (api/media_type.py). A 405 says which methods the path takes."""

from __future__ import annotations

import json

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient

BODY = json.dumps({"name": "media"}).encode()


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "application/json"},
        {"content-type": "application/json; charset=utf-8"},
        {"content-type": "Application/JSON"},
        {"content-type": "application/merge-patch+json"},
    ],
    ids=["json", "charset", "case", "plus-json"],
)
def test_json_bodies_are_read(test_client: TestClient, headers: dict[str, str]) -> None:
    response = test_client.post("/api/v1/tasks", content=BODY, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "media"


def test_a_refused_type_names_what_was_sent_and_what_to_send(test_client: TestClient) -> None:
    response = test_client.post("/api/v1/tasks", content=BODY, headers={"content-type": "text/csv"})
    error = assert_error(response, 415, "application/json", "text/csv")
    assert error["code"] == "unsupported_media_type"
    assert error["details"] == {"content_type": "text/csv", "expected": "application/json"}


def test_a_body_with_no_type_is_refused_saying_so(test_client: TestClient) -> None:
    request = test_client.build_request("POST", "/api/v1/tasks", content=BODY)
    assert "content-type" not in request.headers
    error = assert_error(test_client.send(request), 415, "application/json", "declared no type")
    assert error["details"]["content_type"] is None


def test_a_route_without_a_body_ignores_the_type(test_client: TestClient) -> None:
    machine = {"op": "noop", "target": {"site": "plant-1", "agent": "skid-a"}}
    created = test_client.post("/api/v1/tasks", json={"name": "run me", **machine}).json()
    response = test_client.post(
        f"/api/v1/tasks/{created['id']}/run", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 201, response.text


def test_wrong_method_lists_the_methods_the_path_takes(test_client: TestClient) -> None:
    response = test_client.delete("/api/v1/tasks")
    error = assert_error(response, 405, "method DELETE is not allowed", "GET", "POST")
    assert error["code"] == "method_not_allowed"
    assert {m.strip() for m in response.headers["allow"].split(",")} == {"GET", "POST"}
