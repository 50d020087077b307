"""A device's latest point values come from one bounded query, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.services import point_values
from tme.controller.store.models import Device, Run, Task, utcnow

POINTS = [
    {"name": "level", "kind": "point", "unit": "%"},
    {"name": "inflow", "kind": "point", "unit": "l/min"},  # no run ever reads it
]


def _reads(engine: Engine, count: int) -> Device:
    now = utcnow()
    with Session(engine) as session:
        device = Device(site="plant-x", agent="skid-a", name="tank1", points=POINTS)
        task = Task(name="read", op="modbus.read", site="plant-x", agent="skid-a", device="tank1")
        session.add_all([device, task])
        session.flush()
        for i in range(count):
            result = {"values": {"level": {"value": float(i), "unit": "%"}}}
            at = now - timedelta(seconds=count - i)
            session.add(Run(task_id=task.id or 0, state="succeeded", result=result, finished_at=at))
        session.commit()
        session.refresh(device)
        return device


def test_a_point_no_run_read_costs_one_query_not_one_per_page(engine: Engine) -> None:
    device = _reads(engine, 2 * point_values.PAGE + 50)  # three pages of runs
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with Session(engine) as session:
            values = point_values.latest_values(session, device)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    shown = {p.name: p.value for p in values.points}
    assert shown == {"level": float(2 * point_values.PAGE + 49), "inflow": None}
    assert len(statements) == 1  # every page came from the same query
    assert "LIMIT" in statements[0].upper()  # and it is bounded by MAX_SCAN
