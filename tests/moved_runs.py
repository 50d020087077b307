"""Runs for tests: tasks created together, as the controller creates them, and their
first runs moved through some states."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services.runs import transition
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.schemas import TaskCreate
from tme.states import RunState


def runs_moved(engine: Engine, items: Sequence[TaskCreate], *states: RunState) -> list[str]:
    """The run ids of new tasks made from `items`, each run moved through `states`."""
    with session_scope(engine) as session:
        hook = RunReady(Settings(), threading.Event())
        made = create_tasks(session, list(items), on_run_ready=hook)
        run_ids = [str(task.latest_run_id) for task, _ in made]
    with session_scope(engine) as session:
        for run in session.exec(select(Run).where(col(Run.id).in_(run_ids))):
            for state in states:
                transition(session, run, state)
    return run_ids


def run_state(engine: Engine, run_id: str) -> str:
    """The state the run is in, as stored."""
    with Session(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.state
