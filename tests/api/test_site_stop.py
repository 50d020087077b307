"""POST /api/v1/sites/{site}/stop: every device of a site with a safe value is stopped at
once, as a device's stop (one transaction, every stop before any stop request of a
canceled run); the others are named with why; a caller outside the site sees no site."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api_helpers import assert_error
from fastapi.testclient import TestClient
from rollout_fleet import plant, publish
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.controller.dispatcher import UNPUBLISHED
from tme.controller.outbox import queue_run
from tme.controller.services.bootstrap import make_user_with_token
from tme.controller.services.runs import record_hop
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Agent, Outbox, Run, Task
from tme.protocol import Command
from tme.schemas import TaskCreate


def _offline(engine: Engine, site: str, agent: str) -> None:
    with Session(engine) as session:
        found = session.exec(select(Agent).where(Agent.site == site, Agent.name == agent)).one()
        found.online = False
        session.add(found)
        session.commit()


def _write(engine: Engine, device: str, agent: str = "skid-a") -> str:
    """A write of `device`'s speed running at its agent."""
    body = TaskCreate.model_validate(
        {
            "name": f"speed of {device}",
            "op": "modbus.write",
            "target": {"site": "plant-1", "agent": agent, "device": device},
            "params": {"point": "speed_setpoint", "value": 900},
        }
    )
    with Session(engine) as session:
        task, _ = create_task(
            session, body, on_run_ready=lambda s, r, t: queue_run(s, r, t, 30, 60)
        )
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        record_hop(session, run, "dispatched")
        record_hop(session, run, "running", source="agent")
        session.commit()
        return run.id


def _published(engine: Engine) -> None:
    """Every outbox row so far went out (the commands are at their agents)."""
    with Session(engine) as session:
        for row in session.exec(select(Outbox)):
            row.published_at = row.created_at
            session.add(row)
        session.commit()


def _stops(engine: Engine) -> list[tuple[str, str | None]]:
    """The stop tasks made, as (name, device)."""
    with Session(engine) as session:
        query = select(Task.name, Task.device).where(Task.op == "device.stop")
        return list(session.exec(query.order_by(col(Task.id))).all())


def test_every_device_with_a_safe_value_is_stopped_and_the_rest_named(
    test_client: TestClient, app_engine: Engine
) -> None:
    plant(app_engine)  # pumps 1, 2 on skid-a with a tank; pumps 3, 4 on skid-b; a meter
    plant(app_engine, "plant-2")
    _offline(app_engine, "plant-1", "skid-b")
    running = _write(app_engine, "pump1")
    _published(app_engine)
    answer = test_client.post("/api/v1/sites/plant-1/stop", json={"reason": "flood in hall 2"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["site"] == "plant-1"
    stopped = {(d["agent"], d["device"]): d for d in body["stopped"]}
    assert sorted(stopped) == [
        ("skid-a", "pump1"),
        ("skid-a", "pump2"),
        ("skid-b", "pump3"),
        ("skid-b", "pump4"),
    ]
    assert stopped[("skid-a", "pump1")]["canceled_runs"] == [running]
    assert stopped[("skid-a", "pump1")]["agent_online"] is True
    assert stopped[("skid-b", "pump3")]["agent_online"] is False  # it waits for its agent
    assert [(d["agent"], d["device"]) for d in body["not_stopped"]] == [
        ("lab-c", "meter1"),
        ("skid-a", "tank1"),
    ]
    assert all("safe_value" in d["why"] for d in body["not_stopped"])
    with Session(app_engine) as session:
        for device in stopped.values():
            run = session.get(Run, device["run_id"])
            task = session.get(Task, device["task_id"])
            assert run is not None and task is not None
            assert (task.op, task.device, task.priority) == ("device.stop", device["device"], 9)
            assert task.params["reason"] == "flood in hall 2"
        # every stop goes out before the stop request of the write it canceled
        ops = [Command.from_json(row.body).op for row in session.execute(UNPUBLISHED)]
    assert ops == ["device.stop"] * 4 + ["cancel"]
    assert len(_stops(app_engine)) == 4  # none at plant-2


def test_an_agent_narrows_it_to_that_agents_devices(
    test_client: TestClient, app_engine: Engine
) -> None:
    plant(app_engine)
    answer = test_client.post(
        "/api/v1/sites/plant-1/stop", params={"agent": "skid-b"}, json={"reason": "skid-b leaks"}
    )
    assert answer.status_code == 201, answer.text
    assert [d["device"] for d in answer.json()["stopped"]] == ["pump3", "pump4"]
    assert answer.json()["not_stopped"] == []
    assert _stops(app_engine) == [("stop pump3", "pump3"), ("stop pump4", "pump4")]


def test_nothing_to_stop_is_refused_and_changes_nothing(
    test_client: TestClient, app_engine: Engine, counts: Callable[[], dict[str, int]]
) -> None:
    plant(app_engine)
    before = counts()
    unknown = test_client.post("/api/v1/sites/plant-9/stop", json={"reason": "flood"})
    assert_error(unknown, 404, "plant-9")
    none_of_agent = test_client.post(
        "/api/v1/sites/plant-1/stop", params={"agent": "skid-z"}, json={"reason": "flood"}
    )
    assert_error(none_of_agent, 404, "skid-z")
    meter_only = test_client.post(
        "/api/v1/sites/plant-1/stop", params={"agent": "lab-c"}, json={"reason": "flood"}
    )
    error = assert_error(meter_only, 422, "lab-c/meter1", "safe value")
    assert [f["field"] for f in error["details"]] == ["site"]
    no_reason = test_client.post("/api/v1/sites/plant-1/stop", json={"reason": ""})
    assert_error(no_reason, 422, "reason")
    nul = test_client.post("/api/v1/sites/plant-1/stop", json={"reason": "flood\x00"})
    assert_error(nul, 422, "reason", "NUL")
    assert counts() == before
    assert _stops(app_engine) == []


def _as(app_engine: Engine, name: str, role: str, sites: str) -> dict[str, Any]:
    token = make_user_with_token(app_engine, name, role, sites).token
    return {"Authorization": f"Bearer {token}"}


def test_a_site_outside_the_grant_is_not_found_and_a_viewer_may_not_stop(
    test_client: TestClient, app_engine: Engine
) -> None:
    plant(app_engine)
    publish(app_engine, "plant-2", "skid-q", {"pump9": "pump"})
    operator = _as(app_engine, "op-plant-2", "operator", "plant-2,plant-9")  # plant-9: no device
    elsewhere = test_client.post(
        "/api/v1/sites/plant-1/stop", json={"reason": "flood"}, headers=operator
    )
    nowhere = test_client.post(
        "/api/v1/sites/plant-9/stop", json={"reason": "flood"}, headers=operator
    )
    said = assert_error(elsewhere, 404, "plant-1")["message"]
    # said as a site without devices is: whether it exists is not told
    assert said == assert_error(nowhere, 404)["message"].replace("plant-9", "plant-1")
    viewer = _as(app_engine, "viewer-1", "viewer", "plant-1")
    refused = test_client.post(
        "/api/v1/sites/plant-1/stop", json={"reason": "flood"}, headers=viewer
    )
    assert refused.status_code == 403, refused.text
    assert _stops(app_engine) == []
    own = test_client.post("/api/v1/sites/plant-2/stop", json={"reason": "flood"}, headers=operator)
    assert own.status_code == 201, own.text
    assert _stops(app_engine) == [("stop pump9", "pump9")]
