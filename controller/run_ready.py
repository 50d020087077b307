"""The controller's run-ready hook: link a new run to its workflow run, then queue it.

Every run handed to an agent passes here (created tasks, schedules, triggers,
workflow steps, retries). A run without a link yet starts its own workflow run. A
run whose exclusive resource another run holds waits for it instead.
A task's own queue timeout replaces the default one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect
from sqlmodel import Session

from tme.controller.outbox import (
    Wake,
    dispatched_to_agent,
    queue_run,
    ready_for_report,
    wake_after_commit,
)
from tme.controller.services.launch import link_run
from tme.controller.services.resources import wait_for_resources
from tme.controller.services.task_start import StartBatch
from tme.controller.store.db import find, noted
from tme.controller.store.models import Run, Task
from tme.controller.store.workflow_models import RunLink, TaskPolicy


class RunReady:
    def __init__(self, settings: Any, wake: Wake) -> None:
        self.default_timeout_s = float(settings.tasks.default_timeout_s)
        self.queue_timeout_s = float(settings.tasks.queue_timeout_s)
        self.wake = wake

    def start_batch(self) -> StartBatch:
        """For new tasks: their first runs built before the transaction writes, linked and
        queued by the same rules as here."""
        return StartBatch(self.default_timeout_s, self.queue_timeout_s, self.wake)

    def __call__(self, session: Session, run: Run, task: Task) -> None:
        policy = find(session, TaskPolicy, task.id)
        # A run not flushed yet can have no link but one noted in this transaction.
        if inspect(run).pending:
            link = noted(session, RunLink, run.id)
        else:
            link = find(session, RunLink, run.id)
        if link is None:
            link = link_run(
                session, run, cause="created", deadline_s=policy.deadline_s if policy else None
            )
        if task.resources and wait_for_resources(session, run, task, link):
            return  # one of its resources is taken: it waits (services/resources.py)
        if not dispatched_to_agent(task):
            ready_for_report(session, run)
            return
        queue_timeout_s = (policy.queue_timeout_s if policy else None) or self.queue_timeout_s
        queue_run(session, run, task, self.default_timeout_s, queue_timeout_s, link.deadline_at)
        wake_after_commit(session, self.wake)
