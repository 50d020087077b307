"""Shared names of the access-control tests."""

from __future__ import annotations

import uuid
from typing import Any

SITE_A = f"site-a-{uuid.uuid4().hex[:6]}"
SITE_B = f"site-b-{uuid.uuid4().hex[:6]}"


def create_task(client: Any, headers: dict[str, str], site: str | None = SITE_A) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"t-{uuid.uuid4().hex[:6]}"}
    if site is not None:
        body["target"] = {"site": site}
    response = client.post("/api/v1/tasks", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())
