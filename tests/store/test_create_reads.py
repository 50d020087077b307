"""Creating a task writes its rows and reads none back: the policy row is made, not
looked up, a new task has no dependency edges to replace, and rendering the task for
the response finds everything already in the session."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tme.controller.services.tasks import create_task, to_public
from tme.controller.store.db import session_scope
from tme.schemas import TaskCreate

WRITE = {
    "name": "set pump speed",
    "op": "modbus.write",
    "target": {"site": "plant-1", "agent": "skid-a", "device": "pump1"},
    "params": {"point": "speed_setpoint", "value": 1200},
}


def test_create_and_render_read_nothing_back(engine: Engine) -> None:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope(engine) as session:
            task, created = create_task(session, TaskCreate.model_validate(WRITE))
            session.commit()
            public = to_public(task)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert created and public.status == "pending" and public.paused is False
    assert "SELECT" not in statements, statements
