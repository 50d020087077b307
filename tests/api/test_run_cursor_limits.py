"""A run-page cursor whose key no query can bind answers the bad-cursor 422 (it was a
500): a time that leaves the calendar once converted to UTC, a row id that is not
storable text (a lone surrogate, a NUL) or longer than any run id."""

from __future__ import annotations

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient

from tme.controller.services.paging import decode_time_id_cursor, encode_cursor

NOW = "2026-01-01T00:00:00+00:00"
RUN = "6d1c7b1e-0000-4000-8000-000000000000"
BAD = {
    "before year 1 in UTC": encode_cursor("0001-01-01T00:00:00+14:00", RUN),
    "after year 9999 in UTC": encode_cursor("9999-12-31T23:59:59-14:00", RUN),
    "lone surrogate in the id": encode_cursor(NOW, "\ud800"),
    "NUL in the id": encode_cursor(NOW, "run\x00"),
    "id longer than 64": encode_cursor(NOW, "r" * 65),
}


@pytest.fixture
def task_id(test_client: TestClient) -> int:
    made = test_client.post("/api/v1/tasks", json={"name": "paged"})
    assert made.status_code == 201, made.text
    return int(made.json()["id"])


@pytest.mark.parametrize("cursor", list(BAD.values()), ids=list(BAD))
def test_a_cursor_no_query_can_bind_is_a_bad_cursor(
    test_client: TestClient, task_id: int, cursor: str
) -> None:
    response = test_client.get(f"/api/v1/tasks/{task_id}/runs", params={"cursor": cursor})
    error = assert_error(response, 422, "invalid cursor")
    assert [detail["field"] for detail in error["details"]] == ["cursor"]


def test_a_cursor_time_with_an_offset_is_read_in_utc(test_client: TestClient, task_id: int) -> None:
    cursor = encode_cursor("2026-01-01T02:00:00+02:00", "r" * 64)
    assert decode_time_id_cursor(cursor)[0].isoformat() == NOW
    response = test_client.get(f"/api/v1/tasks/{task_id}/runs", params={"cursor": cursor})
    assert response.status_code == 200, response.text
