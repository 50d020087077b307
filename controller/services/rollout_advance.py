"""A rollout's waves: what it does each time one of its runs settles.

`advance` locks the rollout's row, reads back where its devices stand (their tasks'
latest runs, counted once settled: a retry planned is the latest run then), and
aborts it once too many of its settled runs did not succeed, starts the next runs in
device name order up to its window, or ends it. The workflow engine calls
`advance_rollouts` in the transaction that records a settle (workflow.settle_run), and
a create calls `advance` for the first wave. Every start goes through `launch_run`, as a
"run now" does, so the task's overlap policy, resources and the outbox apply.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from tme.controller.services.launch import launch_run
from tme.controller.services.runs import RunReadyHook, storable
from tme.controller.store.models import Task, utcnow
from tme.controller.store.rollout_models import Rollout, RolloutDevice
from tme.controller.store.workflow_models import RunLink
from tme.states import FAILURE_STATES, RunState

NOT_STARTED, STARTED, SKIPPED = "not_started", "started", "skipped"
GOING = "going"
FAILURE_VALUES = frozenset(s.value for s in FAILURE_STATES)


@dataclass
class Standing:
    """Where a rollout's devices stand, from their rows and their tasks' latest runs."""

    devices: list[RolloutDevice]
    # task id -> its status (its latest run's state) and whether that run settled
    statuses: dict[int, tuple[str, bool]]

    def status(self, device: RolloutDevice) -> str | None:
        found = self.statuses.get(device.task_id or 0)
        return found[0] if found is not None else None

    def settled(self, device: RolloutDevice) -> bool:
        """A started device whose latest run settled (the workflow engine took its final
        state: a retry it plans is its latest run then); one whose task was deleted
        counts as settled, as it runs no more."""
        found = self.statuses.get(device.task_id or 0)
        if device.phase != STARTED:
            return False
        return found is None or (RunState(found[0]).is_final and found[1])

    @property
    def finished(self) -> list[RolloutDevice]:
        return [d for d in self.devices if self.settled(d)]

    @property
    def failed(self) -> list[RolloutDevice]:
        return [d for d in self.finished if self.status(d) in FAILURE_VALUES]

    @property
    def going(self) -> int:
        return sum(1 for d in self.devices if d.phase == STARTED and not self.settled(d))

    @property
    def not_started(self) -> list[RolloutDevice]:
        return [d for d in self.devices if d.phase == NOT_STARTED]


def standing(session: Session, rollout_id: int) -> Standing:
    devices = list(
        session.exec(
            select(RolloutDevice)
            .where(RolloutDevice.rollout_id == rollout_id)
            .order_by(col(RolloutDevice.position))
        ).all()
    )
    ids = [d.task_id for d in devices if d.task_id is not None]
    rows = session.exec(
        select(Task.id, Task.status, RunLink.settled)
        .outerjoin(RunLink, col(RunLink.run_id) == col(Task.latest_run_id))
        .where(col(Task.id).in_(ids))
    ).all()
    return Standing(devices, {tid or 0: (status, bool(done)) for tid, status, done in rows})


def advance(session: Session, rollout_id: int, hook: RunReadyHook | None) -> None:
    """Abort, start the next runs up to the window, or end the rollout, as its runs now
    stand. Its row is locked first: two runs settling at once decide one after the other."""
    rollout = session.get(Rollout, rollout_id, with_for_update=True)
    while rollout is not None and rollout.state == GOING:
        now = standing(session, rollout_id)
        why = abort_reason(rollout, now)
        if why is not None:
            end(session, rollout, "aborted", why, now.not_started)
            return
        if not now.not_started:
            if now.going == 0:
                failures = len(now.finished) - sum(
                    1 for d in now.finished if now.status(d) == RunState.succeeded
                )
                end(session, rollout, "done" if failures else "succeeded", "", [])
            return
        room = rollout.window - now.going
        if room <= 0:
            return
        for device in now.not_started[:room]:
            _start(session, rollout, device, hook)
        # Loop: a start may end at once (its task's overlap policy refused it).


def abort_reason(rollout: Rollout, now: Standing) -> str | None:
    settled, failed = len(now.finished), len(now.failed)
    if settled < rollout.min_settled or not failed:
        return None
    share = 100 * failed / settled
    if share < rollout.failed_percent:
        return None
    return (
        f"rollout aborted: {failed} of {settled} settled runs did not succeed"
        f" ({share:.3g}% >= {rollout.failed_percent:g}%)"
    )


def _start(
    session: Session, rollout: Rollout, device: RolloutDevice, hook: RunReadyHook | None
) -> None:
    task = session.get(Task, device.task_id) if device.task_id is not None else None
    device.phase = STARTED
    if task is None:
        device.reason = "its task was deleted before its run started"
    else:
        reason = f"rollout {rollout.id} ({rollout.name})"
        run = launch_run(session, task, cause="rollout", reason=reason, hook=hook)
        device.run_id = run.id
    session.add(device)
    session.flush()


def end(
    session: Session, rollout: Rollout, state: str, reason: str, skipped: list[RolloutDevice]
) -> None:
    """The rollout ends in `state`; the devices not started are skipped with the reason."""
    for device in skipped:
        device.phase, device.reason = SKIPPED, storable(reason)
        session.add(device)
    rollout.state, rollout.reason = state, storable(reason)
    rollout.finished_at = rollout.updated_at = utcnow()
    session.add(rollout)
    session.flush()


def advance_rollouts(session: Session, task_id: int, hook: RunReadyHook | None) -> None:
    """A run of `task_id` settled: advance the rollout going it belongs to, if any."""
    going = session.exec(
        select(RolloutDevice.rollout_id)
        .join(Rollout, col(Rollout.id) == col(RolloutDevice.rollout_id))
        .where(RolloutDevice.task_id == task_id, Rollout.state == GOING)
    ).all()
    for rollout_id in sorted(set(going)):
        advance(session, rollout_id, hook)
