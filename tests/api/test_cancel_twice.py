"""A run on its way asked to stop sends its agent a stop request at once (the dispatcher
is woken by the cancel, not left to its poll); asked twice (a script retrying its
cancel, two people at once), one stop request, not one per cancel; `force` then marks
it canceled without another."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from waiting import wait_until

from tme.controller import dispatcher as dispatcher_module
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


def _stop_requests(engine: Any, run_id: str, *, published: bool = False) -> int:
    with Session(engine) as session:
        rows = session.exec(select(Outbox)).all()
        bodies = [json.loads(row.body) for row in rows if row.published_at or not published]
    return sum(
        1
        for body in bodies
        if isinstance(body, dict)
        and body.get("op") == CANCEL_OP
        and body.get("params", {}).get("command_id") == run_id
    )


def test_a_stop_request_leaves_at_once(
    test_client: TestClient, app_engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The dispatcher's poll is made too slow to find the stop request in the test's
    # time: only the cancel's wake can send it. (Its wait in progress, of the usual
    # second, ends with the run's own dispatch.)
    monkeypatch.setattr(dispatcher_module, "IDLE_POLL_S", 300.0)
    task = test_client.post(
        "/api/v1/tasks",
        json={"name": "long", "op": "sleep", "target": {"site": "plant", "agent": "skid"},
              "params": {"seconds": 600}},
    ).json()  # fmt: skip
    run_id = task["latest_run_id"]
    wait_until(lambda: test_client.get(f"/api/v1/runs/{run_id}").json()["state"] == "dispatched")
    answer = test_client.post(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    wait_until(
        lambda: _stop_requests(app_engine, run_id, published=True) == 1,
        timeout=10,
        what="the stop request published",
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
