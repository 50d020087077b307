"""A REST change is committed with its audit row, in one transaction, or not at all.

Every change but a task create used to get its row once its response was out, in a
transaction of its own: when that append failed (a database error, a crash in
between), a task was deleted, a run started, a device stopped, a rule made or a
session ended with no row saying who did it. Now the route appends the row just before
its own commit; one that cannot be written rolls the change back and answers 503.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audit_refusing import AuditLogRefusing
from dialects import DIALECTS, postgres_emptying, upgraded_engine
from fastapi.testclient import TestClient
from rollout_fleet import plant, speed
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.services import audit
from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Task
from tme.controller.store.security_models import AuditEntry
from tme.schemas import TaskCreate

# What a change may touch, as stored (a token's last use is stamped by every request).
STATE = [
    "SELECT id, status, revision, description FROM tasks ORDER BY id",
    "SELECT id, state FROM runs ORDER BY id",
    "SELECT task_id, paused FROM task_policies ORDER BY task_id",
    "SELECT workflow_id FROM workflow_cancels ORDER BY workflow_id",
    "SELECT id, state FROM rollouts ORDER BY id",
    "SELECT id FROM notification_rules ORDER BY id",
    "SELECT id, revoked_at FROM api_tokens ORDER BY id",
    "SELECT id, last_login_at FROM users ORDER BY id",
    "SELECT id FROM audit_log ORDER BY id",
]
EMPTIED = (
    "tasks",
    "workflow_cancels",
    "devices",
    "agents",
    "sites",
    "rollouts",
    "notification_rules",
    "users",
)


@pytest.fixture(params=DIALECTS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An upgraded database of each dialect with no tasks, users or audit rows."""
    engine = upgraded_engine(request, tmp_path, "rest_changes")
    if request.param == "postgresql":
        emptying = postgres_emptying(engine, (*EMPTIED, "audit_log", "audit_head"))
        with engine.begin() as connection:
            for statement in emptying:
                connection.exec_driver_sql(statement)
    yield engine
    engine.dispose()


@dataclass
class Api:
    engine: Engine
    client: TestClient
    password: str  # ann's


@pytest.fixture
def api(engine: Engine, fixture_password: str) -> Iterator[Api]:
    """The API on that database (no scheduling or dispatching behind it), as admin ann."""
    token = make_user_with_token(engine, "ann", "admin", password=fixture_password).token
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(database={"url": url}, broker={"url": "memory://"})
    app = create_app(settings, engine=engine, runtime=False, warm=False)
    headers = {"Authorization": f"Bearer {token}"}
    # A 500 is answered (and audited), not raised into the test.
    with TestClient(app, headers=headers, raise_server_exceptions=False) as client:
        yield Api(engine, client, fixture_password)


def _state(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return [connection.execute(text(query)).all() for query in STATE]


def _task(engine: Engine, **fields: Any) -> int:
    with Session(engine) as session:
        task, _ = create_task(session, TaskCreate.model_validate({"name": "t", **fields}))
        session.commit()
        return task.id or 0


def _latest_run(engine: Engine, task_id: int) -> str:
    with Session(engine) as session:
        return session.get_one(Task, task_id).latest_run_id or ""


@dataclass
class Change:
    method: str
    path: str
    body: dict[str, Any] | None
    status: int  # what the change answers
    headers: dict[str, str] | None = None


def _delete(api: Api) -> Change:
    return Change("DELETE", f"/api/v1/tasks/{_task(api.engine)}", None, 204)


def _patch(api: Api) -> Change:
    return Change("PATCH", f"/api/v1/tasks/{_task(api.engine)}", {"description": "new"}, 200)


def _report_with_a_change(api: Api) -> Change:
    """A status report that changes a field too (a report alone is audited afterwards)."""
    body = {"status": "started", "description": "on it"}
    return Change("PATCH", f"/api/v1/tasks/{_task(api.engine)}", body, 200)


def _legacy_put(api: Api) -> Change:
    return Change("PUT", f"/task/{_task(api.engine)}/", {"description": "new"}, 200)


def _batch(api: Api) -> Change:
    return Change("POST", "/api/v1/tasks/batch", {"tasks": [{"name": "a"}, {"name": "b"}]}, 201)


def _run_now(api: Api) -> Change:
    task_id = _task(api.engine, schedule={"at": "2099-01-01T00:00:00Z"})  # no run till then
    return Change("POST", f"/api/v1/tasks/{task_id}/run", None, 201)


def _pause(api: Api) -> Change:
    return Change("POST", f"/api/v1/tasks/{_task(api.engine)}/pause", None, 200)


def _cancel_workflow(api: Api) -> Change:
    """An external batch (it runs at once) and its alarm on failure: the workflow run."""
    batch = _task(api.engine, name="batch")
    _task(api.engine, name="alarm", depends_on=[{"task": batch, "on": "failure"}])
    return Change("POST", f"/api/v1/workflows/{_latest_run(api.engine, batch)}/cancel", None, 200)


def _trigger(api: Api) -> Change:
    _task(api.engine, trigger="shift-start")
    return Change("POST", "/api/v1/triggers/shift-start", None, 200)


def _cancel_run(api: Api) -> Change:
    run_id = _latest_run(api.engine, _task(api.engine))  # external: pending at once
    return Change("POST", f"/api/v1/runs/{run_id}/cancel", None, 200)


def _device_stop(api: Api) -> Change:
    plant(api.engine)
    return Change("POST", "/api/v1/devices/pump1/stop", {"reason": "leak"}, 201)


def _site_stop(api: Api) -> Change:
    plant(api.engine)
    return Change("POST", "/api/v1/sites/plant-1/stop", {"reason": "flood"}, 201)


def _rollout(api: Api) -> Change:
    plant(api.engine)
    return Change("POST", "/api/v1/rollouts", speed(), 201)


def _device_resume(api: Api) -> Change:
    _send(api, _device_stop(api))
    return Change("POST", "/api/v1/devices/pump1/resume", {"reason": "fixed"}, 201)


def _rollout_cancel(api: Api) -> Change:
    made = _send(api, _rollout(api)).json()
    return Change("POST", f"/api/v1/rollouts/{made['id']}/cancel", None, 200)


def _rule_delete(api: Api) -> Change:
    made = _send(api, _rule(api)).json()
    return Change("DELETE", f"/api/v1/notifications/rules/{made['id']}", None, 204)


def _rule(api: Api) -> Change:
    body = {"name": "mail", "channel": "email", "target": "ops@example.com"}
    return Change("POST", "/api/v1/notifications/rules", body, 201)


def _login(api: Api) -> Change:
    body = {"username": "ann", "password": api.password}
    return Change("POST", "/api/v1/auth/login", body, 200)


def _logout(api: Api) -> Change:
    signed_in = api.client.post("/api/v1/auth/login", json=_login(api).body)
    session = f"Bearer {signed_in.json()['token']}"
    return Change("POST", "/api/v1/auth/logout", None, 204, {"Authorization": session})


# At least one change of each routes module (tasks, documented paths, scheduling,
# fleet, rollouts, notifications, auth), and each way a route commits.
CHANGES: dict[str, Callable[[Api], Change]] = {
    "task delete": _delete,
    "task patch": _patch,
    "task report and change": _report_with_a_change,
    "task put (documented path)": _legacy_put,
    "task batch": _batch,
    "run now": _run_now,
    "pause": _pause,
    "workflow cancel": _cancel_workflow,
    "trigger": _trigger,
    "run cancel": _cancel_run,
    "device stop": _device_stop,
    "device resume": _device_resume,
    "site stop": _site_stop,
    "rollout create": _rollout,
    "rollout cancel": _rollout_cancel,
    "notification rule create": _rule,
    "notification rule delete": _rule_delete,
    "login": _login,
    "logout": _logout,
}


def _send(api: Api, change: Change) -> Any:
    return api.client.request(change.method, change.path, json=change.body, headers=change.headers)


def _rows_after(engine: Engine, last_id: int) -> list[AuditEntry]:
    with Session(engine) as session:
        query = select(AuditEntry).where(col(AuditEntry.id) > last_id)
        return list(session.exec(query.order_by(col(AuditEntry.id))).all())


def _newest_row(engine: Engine) -> int:
    rows = _rows_after(engine, 0)
    return rows[-1].id or 0 if rows else 0


@pytest.mark.parametrize("name", CHANGES)
def test_a_change_whose_audit_row_cannot_be_written_changes_nothing(api: Api, name: str) -> None:
    change, engine = CHANGES[name](api), api.engine
    before = _state(engine)
    with AuditLogRefusing(engine.url.render_as_string(hide_password=False)):
        answer = _send(api, change)
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "unavailable"
    assert error["message"].startswith("nothing changed: the audit row of "), error
    assert error["message"].endswith("cannot be written (audit log refuses rows)"), error
    assert _state(engine) == before


@pytest.mark.parametrize("name", CHANGES)
def test_a_change_is_committed_with_one_row_that_verifies(api: Api, name: str) -> None:
    change, engine = CHANGES[name](api), api.engine
    newest = _newest_row(engine)
    appends = audit._APPENDER.submitted
    answer = _send(api, change)
    assert answer.status_code == change.status, answer.text
    assert audit._APPENDER.submitted == appends  # no audit transaction of its own
    [row] = _rows_after(engine, newest)
    assert (row.actor, row.outcome) == ("ann", "ok")
    if name != "login":  # its row is the session's: no status
        assert row.target == f"{change.method} {change.path}"
        assert row.details["status"] == change.status
    if "location" in answer.headers:
        assert row.details["location"] == answer.headers["location"]
    with Session(engine) as session:
        count, problems = audit.verify_chain(session, audit.key_for(engine))
    assert problems == [] and count == row.id


class RunsRefuseCancels(AuditLogRefusing):
    """A database that refuses to mark a run canceled (the rest goes in)."""

    SQLITE = [
        "CREATE TRIGGER refuse_run_cancels BEFORE UPDATE OF state ON runs"
        " WHEN NEW.state = 'canceled' BEGIN SELECT RAISE(ABORT, 'runs refuse cancels'); END"
    ]
    POSTGRESQL = [
        "CREATE FUNCTION refuse_run_cancels() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.state = 'canceled' THEN RAISE EXCEPTION 'runs refuse cancels'; END IF;"
        " RETURN NEW; END $$",
        "CREATE TRIGGER refuse_run_cancels BEFORE UPDATE ON runs"
        " FOR EACH ROW EXECUTE FUNCTION refuse_run_cancels()",
    ]
    UNDO = {
        "sqlite": ["DROP TRIGGER refuse_run_cancels"],
        "postgresql": [
            "DROP TRIGGER refuse_run_cancels ON runs",
            "DROP FUNCTION refuse_run_cancels()",
        ],
    }


def test_a_change_that_fails_after_its_commit_gets_a_row_saying_so(api: Api) -> None:
    """A workflow run's cancel is committed with its row before its runs are canceled:
    when canceling them fails, the cancel stands, and a second row says the request
    then failed, with what it answered."""
    change = _cancel_workflow(api)
    run_id = change.path.split("/")[-2]  # the batch's run: it names its workflow run
    newest = _newest_row(api.engine)
    with RunsRefuseCancels(api.engine.url.render_as_string(hide_password=False)):
        answer = _send(api, change)
    assert answer.status_code >= 400, answer.text
    with api.engine.connect() as connection:
        canceled = connection.execute(text("SELECT count(*) FROM workflow_cancels")).scalar()
    assert canceled == 1  # committed with its row
    committed, failed = _rows_after(api.engine, newest)
    assert (committed.outcome, committed.details["status"]) == ("ok", 200)
    assert committed.details["runs"] == [run_id]  # the batch's run, going then
    assert (failed.action, failed.target) == (committed.action, committed.target)
    assert (failed.outcome, failed.details["status"]) == ("failed", answer.status_code)
    assert failed.details["committed_as"] == 200
