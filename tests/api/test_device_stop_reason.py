"""A stop's reason goes in its task's description: one with a NUL is refused with 422
naming `reason` and nothing is stored, where the 422 named `description`, a field the
caller never sent."""

from __future__ import annotations

from collections.abc import Callable

from api_helpers import assert_error
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.store.models import Device

RUN = {"name": "run", "kind": "point", "type": "bool", "access": "rw", "safe_value": False}


def test_a_stop_or_resume_reason_with_a_nul_is_refused_naming_it(
    test_client: TestClient, app_engine: Engine, counts: Callable[[], dict[str, int]]
) -> None:
    with Session(app_engine) as session:
        session.add(Device(site="plant-1", agent="skid-a", name="pump1", points=[RUN]))
        session.commit()
    before = counts()
    for action in ("stop", "resume"):
        answer = test_client.post(f"/api/v1/devices/pump1/{action}", json={"reason": "leak\x00"})
        error = assert_error(answer, 422, "reason", "NUL")
        assert [f["field"] for f in error["details"]] == ["reason"]
    assert counts() == before
    taken = test_client.post("/api/v1/devices/pump1/stop", json={"reason": "leak at the seal"})
    assert taken.status_code == 201, taken.text
