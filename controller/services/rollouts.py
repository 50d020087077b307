"""Rollouts: one device op run on many matching devices, in a sliding window.

A create stores the rollout, one task per matched device (not started) and starts the
first `window` runs, all in one transaction. Each time a run of the rollout settles,
the workflow engine calls `advance_rollouts` in the transaction that records the
settle (workflow.settle_run): the rollout's row is locked, its runs' outcomes read
back, and either it aborts (too many did not succeed), starts the next runs (device
name order) up to its window, or ends. Every start goes through `launch_run`, as a
"run now" does, so the task's overlap policy, resources and the outbox apply. Nothing
lives in memory: a controller that restarts finds the rollout where the database
has it, and a settle is claimed once (workflow._claim), so no start is lost or made
twice.
"""

from __future__ import annotations

from sqlmodel import Session

from tme.controller.services.cancel import cancel_run
from tme.controller.services.rollout_advance import GOING, STARTED, advance, end, standing
from tme.controller.services.rollout_match import devices_to_run
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.tasks import create_tasks
from tme.controller.store.models import Run, Task
from tme.controller.store.rollout_models import Rollout, RolloutDevice
from tme.errors import Conflict
from tme.rollout_schemas import MatchedDevice, RolloutCreate, window_size
from tme.schemas import Target, TaskCreate
from tme.states import RunState


def create_rollout(
    session: Session, data: RolloutCreate, by: str, hook: RunReadyHook | None
) -> Rollout:
    """Store the rollout and its tasks and start its first runs, in the caller's
    transaction (a refused request writes nothing)."""
    plan = devices_to_run(session, data)
    rollout = Rollout(
        name=data.name,
        description=data.description,
        site=data.match.site,
        op=data.op,
        params=data.params,
        match=data.match.model_dump(exclude_none=True),
        timeout_s=data.timeout_s,
        retries=data.retries.model_dump(),
        window=window_size(data.window, len(plan.devices)),
        window_given=str(data.window),
        failed_percent=data.abort.failed_percent,
        min_settled=data.abort.min_settled,
        refused=[d.model_dump() for d in plan.refused],
        created_by=by,
    )
    session.add(rollout)
    session.flush()  # its id
    items = [_task_of(data, rollout, d, _names_twice(plan.devices)) for d in plan.devices]
    made = create_tasks(session, items, on_run_ready=hook, start=False)
    for position, (device, (task, _)) in enumerate(zip(plan.devices, made, strict=True)):
        session.add(
            RolloutDevice(
                rollout_id=rollout.id or 0,
                position=position,
                agent=device.agent,
                device=device.device,
                profile=device.profile,
                task_id=task.id,
                warnings=device.warnings,
            )
        )
    session.flush()
    advance(session, rollout.id or 0, hook)
    return rollout


def _names_twice(devices: list[MatchedDevice]) -> set[str]:
    names = [d.device for d in devices]
    return {n for n in names if names.count(n) > 1}


def _task_of(
    data: RolloutCreate, rollout: Rollout, device: MatchedDevice, twice: set[str]
) -> TaskCreate:
    """The task of one device: the rollout's op, params, timeout, retries and priority
    on it."""
    name = f"{data.name}: {device.device}"
    if device.device in twice:
        name += f" ({device.agent})"
    return TaskCreate(
        name=name,
        description=f"rollout {rollout.id} ({data.name})",
        op=data.op,
        target=Target(site=data.match.site, agent=device.agent, device=device.device),
        params=data.params,
        timeout_s=data.timeout_s,
        retries=data.retries,
        priority=data.priority,
    )


def cancel_rollout(session: Session, rollout: Rollout, by: str, *, force: bool = False) -> Rollout:
    """Start no more runs (the devices not started are skipped) and cancel the runs going
    through the runs' own cancel (services/cancel.py), in the caller's transaction;
    `rollout` was read with its row locked."""
    rollout_id = rollout.id or 0
    if rollout.state != GOING:
        raise Conflict(
            f"rollout {rollout_id} already ended ({rollout.state}); nothing to cancel",
            details={"rollout_id": rollout_id, "state": rollout.state},
        )
    now = standing(session, rollout_id)
    why = f"rollout {rollout_id} canceled by {by}"
    end(session, rollout, "canceled", why, now.not_started)
    for device in now.devices:
        if device.phase != STARTED or now.settled(device):
            continue
        task = session.get(Task, device.task_id)
        run = session.get(Run, task.latest_run_id) if task and task.latest_run_id else None
        if run is not None and not RunState(run.state).is_final:  # not ended since read
            cancel_run(session, run.id, force=force, why=why)
    return rollout
