"""Each dashboard action commits its audit row in its own transaction, as the CLI's access
commands do: the change and the row saying who made it, or neither.

The row used to be appended in a transaction of its own once the action was committed:
when that append failed (a database error, a crash in between), a task was made, run,
deleted or a workflow run canceled with no row saying who did it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from audit_refusing import AuditLogRefusing
from dialects import DIALECTS, postgres_emptying, upgraded_engine
from nicegui.testing import User
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.services import audit
from tme.controller.services.roles import Principal, Role
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, Task
from tme.controller.store.security_models import AuditEntry
from tme.controller.store.workflow_models import WorkflowCancel
from tme.errors import NotFound, Unavailable
from tme.schemas import TaskCreate
from tme.ui import actions, context

ANN = Principal(user_id=1, username="ann", role=Role("admin"), sites=("*",))


@pytest.fixture(params=DIALECTS)
def engine(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    """An upgraded database of each dialect with no tasks and no audit rows, the
    dashboard bound to it."""
    engine = upgraded_engine(request, tmp_path, "actions")
    if request.param == "postgresql":
        with engine.begin() as connection:
            for statement in postgres_emptying(engine, ("tasks", "audit_log", "audit_head")):
                connection.exec_driver_sql(statement)
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(database={"url": url}, broker={"url": "memory://"})
    state = SimpleNamespace(engine=engine, settings=settings, on_run_ready=None)
    monkeypatch.setattr(context, "_bound", context.Dashboard(state))
    yield engine
    engine.dispose()


def _task(engine: Engine, **fields: Any) -> int:
    with Session(engine) as session:
        task, _ = create_task(session, TaskCreate.model_validate({"name": "t", **fields}))
        session.commit()
        return task.id or 0


def _state(engine: Engine) -> list[Any]:
    """The tasks, runs, workflow cancels and audit rows, as they are stored."""
    with Session(engine) as session:
        return [
            [(t.id, t.name, t.status) for t in session.exec(select(Task).order_by(col(Task.id)))],
            [(r.id, r.state) for r in session.exec(select(Run).order_by(col(Run.id)))],
            [c.workflow_id for c in session.exec(select(WorkflowCancel))],
            [e.id for e in session.exec(select(AuditEntry))],
        ]


def _rows(engine: Engine) -> list[tuple[str, str, str, str, str]]:
    with Session(engine) as session:
        entries = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        return [(e.action, e.actor, e.target, e.outcome, e.client) for e in entries]


def _verified(engine: Engine) -> int:
    with Session(engine) as session:
        count, problems = audit.verify_chain(session, audit.key_for(engine))
    assert problems == []
    return count


def _workflow(engine: Engine) -> str:
    """An external batch (it runs at once) and its alarm on failure: the workflow run."""
    batch = _task(engine, name="batch")
    _task(engine, name="alarm", depends_on=[{"task": batch, "on": "failure"}])
    with Session(engine) as session:
        return session.get_one(Task, batch).latest_run_id or ""


def _create(engine: Engine) -> Callable[[], object]:
    return lambda: actions.create_task(ANN, TaskCreate(name="new"))


def _run_now(engine: Engine) -> Callable[[], object]:
    task_id = _task(engine, schedule={"at": "2099-01-01T00:00:00Z"})  # no run till then
    return lambda: actions.run_now(ANN, task_id)


def _delete(engine: Engine) -> Callable[[], object]:
    task_id = _task(engine)
    return lambda: actions.delete(ANN, task_id)


def _cancel_run(engine: Engine) -> Callable[[], object]:
    task_id = _task(engine)  # external: its run is pending at once
    with Session(engine) as session:
        run_id = session.get_one(Task, task_id).latest_run_id or ""
    return lambda: actions.cancel_run(ANN, run_id)


def _cancel_workflow(engine: Engine) -> Callable[[], object]:
    workflow_id = _workflow(engine)
    return lambda: actions.cancel_workflow(ANN, workflow_id)


# Each action as its audit row names it, and what makes it ready (what it acts on).
ACTIONS: dict[str, Callable[[Engine], Callable[[], object]]] = {
    "task.write:create": _create,
    "run.control:run_now": _run_now,
    "task.write:delete": _delete,
    "run.control:cancel": _cancel_run,
    "run.control:cancel_workflow": _cancel_workflow,
}


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_whose_audit_row_cannot_be_written_changes_nothing(
    engine: Engine, name: str
) -> None:
    act = ACTIONS[name](engine)  # what it acts on made first, audited by nobody
    before = _state(engine)
    url = engine.url.render_as_string(hide_password=False)
    with AuditLogRefusing(url), pytest.raises(Unavailable) as refused:
        act()
    assert refused.value.message.startswith("nothing changed: the audit row of ")
    assert refused.value.message.endswith("cannot be written (audit log refuses rows)")
    assert _state(engine) == before


@pytest.mark.parametrize("name", ACTIONS)
def test_an_action_is_committed_with_one_row_that_verifies(engine: Engine, name: str) -> None:
    act = ACTIONS[name](engine)
    appends = audit._APPENDER.submitted
    act()
    assert audit._APPENDER.submitted == appends  # no audit transaction of its own
    [(action, actor, _target, outcome, client)] = _rows(engine)
    assert (action, actor, outcome, client) == (name, "ann", "ok", "dashboard")
    assert _verified(engine) == 1


def test_a_refused_action_changes_nothing_and_is_audited_failed(engine: Engine) -> None:
    with pytest.raises(NotFound):
        actions.run_now(ANN, 404)
    assert _rows(engine) == [("run.control:run_now", "ann", "task 404", "failed", "dashboard")]
    assert _verified(engine) == 1


async def test_the_page_says_nothing_changed_when_the_row_cannot_be_written(
    user: User, board: Any, sign_in: Callable[[User, str], None]
) -> None:
    task_id = _task(board.engine, schedule={"at": "2099-01-01T00:00:00Z"})
    sign_in(user, "operator")
    await user.open("/tasks")
    before = _state(board.engine)
    with AuditLogRefusing(str(board.settings.database.url)):
        user.find("Run now").click()
        await user.should_see(
            f"nothing changed: the audit row of run.control:run_now task {task_id} cannot be"
            " written (audit log refuses rows)"
        )
    assert _state(board.engine) == before  # no run, no row
