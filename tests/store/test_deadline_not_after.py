"""A run's command never outlives its task's deadline: its not_after is the deadline when
that comes before the queue timeout, so a gateway holding it for an offline agent
expires it, and an agent that gets it late refuses it. Before, a run timed out by its
deadline while its agent was offline was still sent when the agent came back, and a
write reached the machine after its run had been recorded `timed_out`."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.launch import launch_run
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Run
from tme.controller.store.workflow_models import RunLink
from tme.protocol import Command
from tme.schemas import TaskCreate

WRITE = {
    "name": "open the valve",
    "op": "modbus.write",
    "target": {"site": "plant-1", "agent": "skid-a", "device": "tank1"},
    "params": {"point": "valve_opening", "value": 77},
}


def _command_and_deadline(session: Session, run_id: str) -> tuple[Command, Any]:
    body = session.exec(select(Outbox.body).where(Outbox.run_id == run_id)).one()
    link = session.get(RunLink, run_id)
    assert link is not None and link.deadline_at is not None
    return Command.from_json(body.encode()), link.deadline_at


def test_a_new_runs_command_expires_at_its_deadline(engine: Engine) -> None:
    hook = RunReady(Settings(), threading.Event())  # queue timeout 300 s
    with session_scope(engine) as session:
        task, _ = create_task(
            session, TaskCreate.model_validate({**WRITE, "deadline_s": 5}), on_run_ready=hook
        )
        assert task.latest_run_id is not None
        command, deadline_at = _command_and_deadline(session, task.latest_run_id)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
    assert command.not_after == deadline_at
    assert run.not_after == deadline_at
    assert command.deadline == deadline_at  # the agent cuts the operation off there too


def test_a_run_started_later_keeps_its_deadline_on_its_command(engine: Engine) -> None:
    hook = RunReady(Settings(), threading.Event())
    with session_scope(engine) as session:
        data = TaskCreate.model_validate({**WRITE, "deadline_s": 5, "trigger": "shift"})
        task, _ = create_task(session, data, on_run_ready=hook)
        run = launch_run(session, task, cause="trigger", reason="trigger shift", hook=hook)
        command, deadline_at = _command_and_deadline(session, run.id)
    assert command.not_after == deadline_at


def test_a_deadline_past_the_queue_timeout_leaves_the_queue_timeout(engine: Engine) -> None:
    hook = RunReady(Settings(), threading.Event())
    with session_scope(engine) as session:
        data = TaskCreate.model_validate({**WRITE, "deadline_s": 3600, "queue_timeout_s": 20})
        task, _ = create_task(session, data, on_run_ready=hook)
        assert task.latest_run_id is not None
        command, deadline_at = _command_and_deadline(session, task.latest_run_id)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
    assert command.not_after < deadline_at
    assert (command.not_after - run.created_at).total_seconds() == 20
    assert command.deadline == deadline_at  # started in time, it still ends by then
