"""The scheduler running inside the controller: real fires, restarts, a second controller."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from waiting import wait_until

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.scheduling import Scheduling
from tme.controller.store.models import Run
from tme.controller.store.workflow_models import ScheduleSlot


def _runs(engine: Engine, task_id: int) -> list[Run]:
    with Session(engine) as session:
        return list(session.exec(select(Run).where(Run.task_id == task_id)))


def test_every_second_schedule_produces_runs(test_client, app_engine) -> None:
    task = test_client.post(
        "/api/v1/tasks",
        json={
            "name": "tick",
            "schedule": {"every_s": 1},
            "overlap": {"policy": "allow", "max": 50},
        },
    ).json()
    assert len(task["next_fire_times"]) == 3
    wait_until(lambda: len(_runs(app_engine, task["id"])) >= 3, timeout=10, what="three fires")
    with Session(app_engine) as session:
        slots = session.exec(select(ScheduleSlot).where(ScheduleSlot.task_id == task["id"])).all()
    assert len({s.slot_at for s in slots}) == len(slots) >= 3
    paused = test_client.post(f"/api/v1/tasks/{task['id']}/pause").json()
    assert paused["paused"] is True and paused["next_fire_times"] == []


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database={"url": f"sqlite:///{tmp_path}/tme.db"}, broker={"url": "memory://"})


def test_restart_neither_repeats_nor_bursts(settings, app_engine, admin_token) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    app = create_app(settings, engine=app_engine)
    with TestClient(app, headers=headers) as client:
        task = client.post(
            "/api/v1/tasks",
            json={
                "name": "tick",
                "schedule": {"every_s": 1},
                "misfire": {"grace_s": 0.5, "policy": "skip"},
                "overlap": {"policy": "allow", "max": 100},
            },
        ).json()
        wait_until(lambda: _runs(app_engine, task["id"]), timeout=10, what="a first fire")
    before = len(_runs(app_engine, task["id"]))
    # the controller is down for a while: slots pass with nobody to fire them
    wait_until(
        lambda: _slots_passed(task, before + 3), timeout=10, what="three slots to pass while down"
    )
    app = create_app(settings, engine=app_engine)
    with TestClient(app, headers=headers):
        wait_until(
            lambda: any(r.state == "skipped" for r in _runs(app_engine, task["id"])),
            timeout=10,
            what="missed slots recorded",
        )
    runs = _runs(app_engine, task["id"])
    missed = [r for r in runs if r.state == "skipped"]
    assert all("missed schedule slot" in r.reason for r in missed)
    with Session(app_engine) as session:
        slots = session.exec(select(ScheduleSlot).where(ScheduleSlot.task_id == task["id"])).all()
    assert len(slots) == len({s.slot_at for s in slots}) == len(runs)  # one run per slot, once


def _slots_passed(task: dict[str, object], count: int) -> bool:
    from datetime import UTC, datetime

    first = datetime.fromisoformat(str(task["next_fire_times"][0]))  # type: ignore[index]
    return (datetime.now(UTC) - first).total_seconds() > count


@pytest.fixture
def two_controllers(app_engine, settings) -> Iterator[tuple[Scheduling, Scheduling]]:
    one = Scheduling(app_engine, None, settings, lease_ttl_s=1.5, tick_s=0.1)
    two = Scheduling(app_engine, None, settings, lease_ttl_s=1.5, tick_s=0.1)
    one.start()
    wait_until(lambda: one.leading, timeout=10, what="the first controller to lead")
    two.start()
    yield one, two
    two.stop()
    one.stop()


def test_second_controller_stands_by_and_takes_over(two_controllers, app_engine, caplog) -> None:
    from tme.controller.services.tasks import create_task
    from tme.controller.store.db import session_scope
    from tme.schemas import TaskCreate

    one, two = two_controllers
    with session_scope(app_engine) as session:
        task, _ = create_task(
            session,
            TaskCreate(
                name="tick", schedule={"every_s": 1}, overlap={"policy": "allow", "max": 99}
            ),
        )
    one.wake()
    wait_until(lambda: len(_runs(app_engine, task.id or 0)) >= 2, timeout=10, what="fires")
    wait_until(lambda: two._told_standby, timeout=5, what="the second to stand by")
    assert not two.leading
    one.stop()  # releases the lease: the second takes over
    wait_until(lambda: two.leading, timeout=10, what="the second controller to take over")
    count = len(_runs(app_engine, task.id or 0))
    wait_until(lambda: len(_runs(app_engine, task.id or 0)) >= count + 2, timeout=10, what="fires")
    with Session(app_engine) as session:
        slots = session.exec(select(ScheduleSlot).where(ScheduleSlot.task_id == task.id)).all()
    assert len(slots) == len({s.slot_at for s in slots})  # no slot fired twice
    assert len(_runs(app_engine, task.id or 0)) == len(slots)


def test_a_stored_schedule_refused_since_keeps_its_task_readable(test_client, app_engine) -> None:
    # Before crontab weekdays were checked, "0 6 * * mon#1" was taken (and fired every
    # Monday); stored so, its task and every task list must still be readable, and
    # the schedule mended by an edit.
    from sqlalchemy import text

    task = test_client.post(
        "/api/v1/tasks", json={"name": "pump", "schedule": {"cron": "0 6 * * 1"}}
    ).json()
    with app_engine.begin() as connection:
        connection.execute(
            text("UPDATE tasks SET schedule = :s WHERE id = :id"),
            {"s": '{"cron": "0 6 * * mon#1", "timezone": "UTC"}', "id": task["id"]},
        )
    shown = test_client.get(f"/api/v1/tasks/{task['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["schedule"]["cron"] == "0 6 * * mon#1"
    assert shown.json()["next_fire_times"] == []
    assert test_client.get("/api/v1/tasks").status_code == 200
    mended = test_client.patch(
        f"/api/v1/tasks/{task['id']}", json={"schedule": {"cron": "0 6 1-7 * *"}}
    )
    assert mended.status_code == 200 and len(mended.json()["next_fire_times"]) == 3
