"""A schedule firing while the same task is edited: neither fails, the fire waits."""

from __future__ import annotations

import threading
from datetime import timedelta

from racing import read_or_locking
from sqlalchemy import text
from sqlalchemy.engine import Engine
from waiting import wait_until

from tme.controller.schedule_fire import handle_due_slots
from tme.controller.services.policies import get_policy
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import utcnow
from tme.schemas import TaskCreate


def test_a_fire_during_an_edit_of_its_task_waits_for_it(any_engine: Engine) -> None:
    with session_scope(any_engine) as session:
        task, _ = create_task(session, TaskCreate(name="pump", schedule={"every_s": 10}))
        get_policy(session, task).schedule_changed_at = utcnow() - timedelta(seconds=15)
    task_id = task.id or 0
    failures: list[BaseException] = []

    def fire() -> None:
        try:
            with session_scope(any_engine) as session:
                handle_due_slots(session, task_id, utcnow(), None)
        except Exception as exc:  # a deadlock victim
            failures.append(exc)

    firing = threading.Thread(target=fire)
    locking = read_or_locking(any_engine, firing, None, writes=False)
    try:
        # An edit, as update_task writes it: the task's row, then its policy's.
        with any_engine.begin() as edit:
            edit.execute(text("UPDATE tasks SET name = 'pump 2' WHERE id = :id"), {"id": task_id})
            firing.start()
            wait_until(locking, timeout=10, what="the fire to lock the task")
            edit.execute(
                text("UPDATE task_policies SET paused = :no WHERE task_id = :id"),
                {"no": False, "id": task_id},
            )
    except Exception as exc:
        failures.append(exc)
    firing.join(timeout=30)
    assert not firing.is_alive()
    assert failures == []
