"""A task whose run has left the controller (queued for dispatch, at an agent, or
reported started) is not deleted: its run's outcome would have nowhere to go."""

from __future__ import annotations

from typing import Any

from api_helpers import assert_error
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from tme.controller.app import create_app
from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Outbox, Run
from tme.schemas import TaskCreate


def test_delete_refuses_a_task_reported_running(test_client: TestClient, counts) -> None:  # type: ignore[no-untyped-def]
    task = test_client.post("/api/v1/tasks", json={"name": "external work"}).json()
    url = f"/api/v1/tasks/{task['id']}"
    started = test_client.patch(url, json={"status": "started"}).json()
    before = counts()

    for path in (url, f"/task/{task['id']}"):
        error = assert_error(test_client.delete(path), 409, "in flight", "cancel")
        assert error["details"] == {
            "task_id": task["id"],
            "run_id": started["latest_run_id"],
            "state": "running",
        }
    assert counts() == before
    assert test_client.get(url).json()["status"] == "running"

    # once the run has settled the task goes, its runs with it
    assert test_client.patch(url, json={"status": "complete"}).status_code == 200
    assert test_client.delete(url).status_code == 204
    assert_error(test_client.get(url), 404)


def _queued_task(engine: Any) -> tuple[int, str]:
    body = TaskCreate.model_validate(
        {"name": "read", "op": "noop", "target": {"site": "plant", "agent": "skid"}}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        run_service.transition(session, run, "queued")
        session.add(Outbox(run_id=run.id, site="plant", body="{}"))
        session.commit()
        return task.id or 0, run.id


def test_delete_refuses_a_queued_run_then_allows_it_canceled(
    app_settings: Any, app_engine: Any, admin_token: str
) -> None:
    # A controller that dispatches nothing: its run stays queued (a dispatcher would
    # publish it within its poll, and the run be dispatched before the test cancels it).
    app = create_app(app_settings, engine=app_engine, runtime=False, warm=False)
    with TestClient(app, headers={"Authorization": f"Bearer {admin_token}"}) as test_client:
        _delete_refused_then_canceled(test_client, app_engine)


def _delete_refused_then_canceled(test_client: TestClient, app_engine: Any) -> None:
    task_id, run_id = _queued_task(app_engine)
    error = assert_error(test_client.delete(f"/api/v1/tasks/{task_id}"), 409, run_id)
    assert error["details"]["state"] == "queued"
    with Session(app_engine) as session:
        assert session.exec(select(Outbox).where(Outbox.run_id == run_id)).first() is not None

    canceled = test_client.post(f"/api/v1/runs/{run_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    assert test_client.delete(f"/api/v1/tasks/{task_id}").status_code == 204


def test_delete_of_a_task_whose_run_waits_for_a_report(test_client: TestClient) -> None:
    task = test_client.post("/api/v1/tasks", json={"name": "not started"}).json()
    assert task["status"] == "pending"
    assert test_client.delete(f"/api/v1/tasks/{task['id']}").status_code == 204
