"""A hop recorded after its run had moved past it (a broker's confirm arriving after
the agent's result) is marked late in the run detail, so a reader of the API does not
take it for a final state changing."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tme.controller.services import runs as run_service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.states import RunState


def test_a_late_hop_is_marked_late(test_client: TestClient, app_engine: Any) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "late"}).json()
    legacy = f"/task/{task['id']}/"
    test_client.put(legacy, json={"status": "started"})
    test_client.put(legacy, json={"status": "complete"})
    run_id = task["latest_run_id"]
    with session_scope(app_engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        assert not run_service.record_hop(session, run, RunState.dispatched, reason="confirmed")
    detail = test_client.get(f"/api/v1/runs/{run_id}").json()
    assert detail["state"] == "succeeded"
    hops = [(e["from_state"], e["to_state"], e["late"]) for e in detail["events"]]
    assert hops == [
        (None, "pending", False),
        ("pending", "running", False),
        ("running", "succeeded", False),
        ("succeeded", "dispatched", True),
    ]
