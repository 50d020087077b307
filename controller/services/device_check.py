"""Check a task against its machine now, without running it (a dry run).

`check_task` creates and starts a task `check <name>` (op device.check) that names the
task's op and params. Its command goes the way every command goes (outbox, broker,
gateway, MQTT); the agent checks it as it would check the task's own command (the
envelope, a lockout or stop, what the interlocks and step limit read from the machine
now) and writes or sends nothing (agents/executor.py). The check's run ends as the
task's would begin: succeeded (it would run, saying what it would do), rejected (it
would be refused, saying why), or failed (what the checks need could not be read).
"""

from __future__ import annotations

from typing import get_args

from sqlmodel import Session

from tme.controller.services.runs import RunReadyHook
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Task
from tme.errors import ValidationError
from tme.schemas import CheckableOp, Target, TaskCreate

CHECKABLE: tuple[str, ...] = get_args(CheckableOp)
# A check that has not reached its agent within this long fails as not delivered: the
# answer is about the machine now, not whenever the agent comes back.
CHECK_QUEUE_TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 30.0  # reading a few interlocks at most
MAX_NAME = 200  # a task's name


def check_task(
    session: Session, task: Task, by: str, on_run_ready: RunReadyHook | None = None
) -> Task:
    """Create and start the task that checks `task` at its agent, in the caller's
    transaction; return it (its latest run is the check's)."""
    if task.op not in CHECKABLE or task.site is None or task.agent is None or task.device is None:
        ops = ", ".join(CHECKABLE)
        raise ValidationError(
            f"task {task.id} ({task.op}) cannot be checked: a check asks a device's agent"
            f" what a device op ({ops}) would do",
            field_errors=[{"field": "op", "message": "not a device op", "type": "value_error"}],
        )
    body = TaskCreate(
        name=f"check {task.name}"[:MAX_NAME],
        description=f"check of task {task.id} by {by}: nothing is written or sent",
        op="device.check",
        target=Target(site=task.site, agent=task.agent, device=task.device),
        params={"op": task.op, "params": task.params},
        timeout_s=CHECK_TIMEOUT_S,
        queue_timeout_s=CHECK_QUEUE_TIMEOUT_S,
    )
    check, _ = create_task(session, body, on_run_ready=on_run_ready)
    return check
