"""A run on its way asked to stop twice (a script retrying its cancel, two people at
once) sends its agent one stop request, not one per cancel; `force` then marks it
canceled without another."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tme.controller.services import runs as run_service
from tme.controller.services.cancel import CANCEL_OP
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Outbox, Run, utcnow
from tme.schemas import TaskCreate


def _running_run(engine: Any) -> str:
    body = TaskCreate.model_validate(
        {"name": "long", "op": "sleep", "target": {"site": "plant", "agent": "skid"},
         "params": {"seconds": 600}}
    )  # fmt: skip
    with Session(engine) as session:
        task, _ = create_task(session, body)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        session.add(Outbox(run_id=run.id, site="plant", body="{}", published_at=utcnow()))
        for state in ("queued", "dispatched", "running"):
            run_service.transition(session, run, state, source="agent")
        session.commit()
        return run.id


def _stop_requests(engine: Any, run_id: str) -> int:
    with Session(engine) as session:
        bodies = [json.loads(row.body) for row in session.exec(select(Outbox)).all()]
    return sum(
        1
        for body in bodies
        if isinstance(body, dict)
        and body.get("op") == CANCEL_OP
        and body.get("params", {}).get("command_id") == run_id
    )


def test_a_cancel_sent_again_sends_no_second_stop_request(
    test_client: TestClient, app_engine: Any
) -> None:
    run_id = _running_run(app_engine)
    for _ in range(3):
        answer = test_client.post(f"/api/v1/runs/{run_id}/cancel")
        assert answer.status_code == 200 and answer.json()["state"] == "running", answer.text
    assert _stop_requests(app_engine, run_id) == 1
    forced = test_client.post(f"/api/v1/runs/{run_id}/cancel", params={"force": "true"})
    assert forced.status_code == 200 and forced.json()["state"] == "canceled", forced.text
    assert _stop_requests(app_engine, run_id) == 1
