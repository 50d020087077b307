"""Reading rollouts: the list (newest first, within the caller's sites) and one rollout
with each device's task, run, state and reason, and the counts per outcome."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from sqlmodel import Session, col, select

from tme.controller.services.paging import decode_id_cursor, id_page
from tme.controller.services.roles import Principal
from tme.controller.services.rollout_advance import NOT_STARTED, SKIPPED
from tme.controller.store.models import Run, Task
from tme.controller.store.rollout_models import Rollout, RolloutDevice
from tme.errors import NotFound
from tme.rollout_schemas import MatchedDevice, RolloutAbort, RolloutDevicePublic, RolloutPublic

MAX_LISTED = 1000
DELETED = "deleted"  # the state of a device whose task was deleted


def device_publics(session: Session, rollout_id: int) -> list[RolloutDevicePublic]:
    """Each device of the rollout, in the order its run starts: a started one in its
    task's latest run's state (a retry's, once planned) and that run's reason."""
    rows = session.exec(
        select(RolloutDevice, Task.status, Task.latest_run_id)
        .outerjoin(Task, col(Task.id) == col(RolloutDevice.task_id))
        .where(RolloutDevice.rollout_id == rollout_id)
        .order_by(col(RolloutDevice.position))
    ).all()
    run_ids = [run_id for device, _, run_id in rows if device.phase not in (NOT_STARTED, SKIPPED)]
    reasons = dict(session.exec(select(Run.id, Run.reason).where(col(Run.id).in_(run_ids))).all())
    publics = []
    for device, status, run_id in rows:
        public = RolloutDevicePublic(
            agent=device.agent,
            device=device.device,
            profile=device.profile,
            task_id=device.task_id,
            run_id=None,
            state=device.phase,
            reason=device.reason,
            warnings=list(device.warnings or []),
        )
        if device.phase not in (NOT_STARTED, SKIPPED):
            public.run_id = run_id or device.run_id
            public.state = status or DELETED
            public.reason = reasons.get(run_id or "", device.reason or "its task was deleted")
        publics.append(public)
    return publics


def to_public(session: Session, rollout: Rollout, *, devices: bool = True) -> RolloutPublic:
    found = device_publics(session, rollout.id or 0)
    public = RolloutPublic(
        id=rollout.id or 0,
        name=rollout.name,
        description=rollout.description,
        site=rollout.site,
        op=rollout.op,
        params=rollout.params,
        match=rollout.match,
        timeout_s=rollout.timeout_s,
        window=rollout.window,
        window_given=rollout.window_given,
        abort=RolloutAbort(failed_percent=rollout.failed_percent, min_settled=rollout.min_settled),
        state=rollout.state,
        reason=rollout.reason,
        created_by=rollout.created_by,
        created_at=rollout.created_at,
        finished_at=rollout.finished_at,
        counts=dict(sorted(Counter(d.state for d in found).items())),
        refused=[MatchedDevice.model_validate(r) for r in rollout.refused or []],
    )
    if devices:
        public.devices = found
    return public


def visible_rollout(
    session: Session, rollout_id: int, principal: Principal, *, lock: bool = False
) -> Rollout:
    """The rollout, or 404 when it does not exist or its site is outside the grant, as
    for another site's task (`lock`: its row locked for this transaction)."""
    rollout = session.get(Rollout, rollout_id, with_for_update=lock)
    if rollout is None or not principal.sees_site(rollout.site):
        raise NotFound(f"rollout {rollout_id} does not exist", details={"rollout_id": rollout_id})
    return rollout


def list_rollouts(
    session: Session,
    sites_in: Sequence[str] | None,
    *,
    site: str | None = None,
    state: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[RolloutPublic], str | None]:
    """Rollouts newest first, of `sites_in` only (None: all), without their devices, and
    the cursor of the page after them (None: the last page)."""
    limit = max(1, min(limit, MAX_LISTED))
    query = select(Rollout).order_by(col(Rollout.id).desc()).limit(limit + 1)
    if sites_in is not None:
        query = query.where(col(Rollout.site).in_(sites_in))
    if site is not None:
        query = query.where(Rollout.site == site)
    if state is not None:
        query = query.where(Rollout.state == state)
    if cursor:
        query = query.where(col(Rollout.id) < decode_id_cursor(cursor))
    rows, next_cursor = id_page(list(session.exec(query).all()), limit)
    return [to_public(session, r, devices=False) for r in rows], next_cursor
