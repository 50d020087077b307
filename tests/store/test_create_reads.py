"""Creating a task writes its rows and reads none back: the policy row is made, not
looked up, a new task has no dependency edges to replace, and rendering the task for
the response finds everything already in the session. What it reads is the fleet its
target is checked against (services/fleet_checks.py), and only that."""

from __future__ import annotations

from sqlalchemy import event
from sqlalchemy.engine import Engine

from tme.controller.services.tasks import create_task, to_public
from tme.controller.store.db import session_scope
from tme.schemas import TaskCreate

FLEET_TABLES = {"devices", "agents", "sites"}
WRITE = {
    "name": "set pump speed",
    "op": "modbus.write",
    "target": {"site": "plant-1", "agent": "skid-a", "device": "pump1"},
    "params": {"point": "speed_setpoint", "value": 1200},
}


def test_create_and_render_read_nothing_back(engine: Engine) -> None:
    statements: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with session_scope(engine) as session:
            task, created = create_task(session, TaskCreate.model_validate(WRITE))
            session.commit()
            public = to_public(task)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert created and public.status == "pending" and public.paused is False
    reads = [s for s in statements if s.upper().startswith("SELECT")]
    read_tables = {s.split(" FROM ", 1)[1].split()[0] for s in reads}
    assert read_tables <= FLEET_TABLES, reads  # the target's agent, site and devices
    assert len(reads) <= 4, reads  # devices, then (never seen) agents, sites, their agents
