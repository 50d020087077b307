"""Helpers of the REST API tests: row counts and the one error shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.engine import Engine

COUNTED = ("tasks", "runs", "run_events", "run_logs", "idempotency_keys", "task_dependencies")


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {
            t: int(connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one())
            for t in COUNTED
        }


def assert_error(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    """The one error shape, the expected status, and a message naming the problem."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert isinstance(error["code"], str) and error["code"]
    for word in words:
        assert word.lower() in error["message"].lower(), (word, error["message"])
    return error


def assert_refused_alone(
    response: httpx.Response,
    field: str,
    said: str,
    counts: Callable[[], dict[str, int]],
    before: dict[str, int],
) -> dict[str, Any]:
    """A 422 naming `field`, and it alone, saying `said`; nothing stored (the row counts
    as `before`)."""
    error = assert_error(response, 422, field, said)
    assert [d["field"] for d in error["details"]] == [field]
    assert counts() == before
    return error
