"""Stop a device now: what TME was asked to do with it is called off, and its agent
writes the safe values of its profile.

In one transaction: every run of a task that targets the device and has not finished
is canceled (one not yet handed to the broker at once; one on its way is asked to stop,
as `tme run cancel` does), and a task `stop <device>` (op `device.stop`) is created and
started. Its command reaches the agent through the same path as any other (outbox,
broker, gateway, MQTT), behind no run of the device. At the agent, the stop goes before
every command of the device still waiting for its bus or running (each is canceled,
saying the stop did it) and writes the safe values in the profile's order
(agents/operations.py); a write the stop cut off mid-request is followed by the safe
values again once it can no longer land.

The stop latches at the agent (from the moment it arrives there, in its state
directory): the device's changes are refused, its reads still run, until a resume
(`resume_device`, op `device.resume`), which the agent answers at once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from tme.controller.services.cancel import cancel_run
from tme.controller.services.fleet_checks import NO_SAFE_VALUE, has_safe_value
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.task_checks import field_error
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Agent, Device, Run, Task
from tme.errors import NotFound, ValidationError
from tme.fleet_schemas import DeviceStopped, NotStoppedDevice, SiteStopped, StoppedDevice
from tme.schemas import Op, Target, TaskCreate
from tme.states import FINAL_STATES

# A stop that has not reached its agent within this long is reported as not delivered:
# whoever asked must then stop the machine another way, not wait for it.
STOP_QUEUE_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0  # writing a few safe values (twice after a write it cut off)
FINAL = [state.value for state in FINAL_STATES]


def stop_device(
    session: Session,
    device: Device,
    reason: str,
    by: str,
    on_run_ready: RunReadyHook | None = None,
) -> DeviceStopped:
    """Start the task that stops the device, then cancel the device's unfinished runs,
    in the caller's transaction.

    The stop goes first: its command and the cancels' stop requests go at the same
    priority, so they reach the agent in the order their outbox rows were written. The
    stop, arriving first, latches the device and cancels every command of it there at
    once; a stop request arriving first instead ended the running write alone, and a
    write waiting behind it took the bus and ran before the stop came (a pump started
    just before its stop)."""
    (stopped,) = stop_devices(session, [device], reason, by, on_run_ready)
    return stopped


def stop_devices(
    session: Session,
    devices: Sequence[Device],
    reason: str,
    by: str,
    on_run_ready: RunReadyHook | None = None,
) -> list[DeviceStopped]:
    """Stop each of `devices` as `stop_device` does, in the caller's transaction: every
    stop first, so that no stop request of a canceled run reaches any of their agents
    before the stops, then the cancels."""
    unfinished = [_unfinished(session, device) for device in devices]  # before the stops
    stops = [_start(session, device, "stop", reason, by, [], on_run_ready) for device in devices]
    for stopped, run_ids in zip(stops, unfinished, strict=True):
        stopped.canceled_runs = [cancel_run(session, run_id).id for run_id in run_ids]
    return stops


def stop_site(
    session: Session,
    site: str,
    agent: str | None,
    reason: str,
    by: str,
    on_run_ready: RunReadyHook | None = None,
    sites_in: Sequence[str] | None = None,
) -> SiteStopped:
    """Stop every device of `site` (of `agent` only, when given) that has a safe value to
    write, in the caller's transaction (`stop_devices`); the others are named, with why.
    NotFound when the site (or agent) has no device, or is not among `sites_in` (the
    caller's grant: a site outside it is said as one without devices), ValidationError
    when none of its devices has a safe value: nothing would be stopped."""
    query = select(Device).where(Device.site == site)
    if sites_in is not None:
        query = query.where(col(Device.site).in_(sites_in))
    if agent:
        query = query.where(Device.agent == agent)
    devices = session.exec(query.order_by(col(Device.agent), col(Device.name))).all()
    of_agent = f" of agent {agent!r}" if agent else ""
    if not devices:
        raise NotFound(
            f"site {site!r} has no device{of_agent} (as its agents published them)",
            details={"site": site, **({"agent": agent} if agent else {})},
        )
    stoppable = [d for d in devices if has_safe_value(d.points)]
    not_stopped = [
        NotStoppedDevice(agent=d.agent, device=d.name, why=NO_SAFE_VALUE)
        for d in devices
        if not has_safe_value(d.points)
    ]
    if not stoppable:
        names = ", ".join(f"{d.agent}/{d.name}" for d in devices)
        message = (
            f"site {site!r} has no device{of_agent} with a safe value to write ({names}):"
            " a stop would write nothing; give their points safe_value"
            " (docs/configuration.md)"
        )
        raise ValidationError(message, field_errors=[field_error("site", message)])
    online = set(
        session.exec(
            select(Agent.name).where(Agent.site == site, col(Agent.online).is_(True))
        ).all()
    )
    stops = stop_devices(session, stoppable, reason, by, on_run_ready)
    return SiteStopped(
        site=site,
        stopped=[
            StoppedDevice(
                agent=device.agent,
                device=device.name,
                agent_online=device.agent in online,
                **stopped.model_dump(),
            )
            for device, stopped in zip(stoppable, stops, strict=True)
        ],
        not_stopped=not_stopped,
    )


def _unfinished(session: Session, device: Device) -> list[str]:
    """The ids of the runs of the device's tasks that have not finished, oldest first."""
    return list(
        session.exec(
            select(Run.id)
            .join(Task, col(Task.id) == col(Run.task_id))
            .where(
                Task.site == device.site,
                Task.agent == device.agent,
                Task.device == device.name,
                col(Run.state).not_in(FINAL),
            )
            .order_by(col(Run.created_at))
        ).all()
    )


def resume_device(
    session: Session,
    device: Device,
    reason: str,
    by: str,
    on_run_ready: RunReadyHook | None = None,
) -> DeviceStopped:
    """Start the task that lifts the device's stop at its agent (nothing is written: its
    next tasks change it again)."""
    return _start(session, device, "resume", reason, by, [], on_run_ready)


def _start(
    session: Session,
    device: Device,
    action: str,
    reason: str,
    by: str,
    canceled: list[str],
    on_run_ready: RunReadyHook | None,
) -> DeviceStopped:
    """Create and start the task `<action> <device>` (op `device.<action>`)."""
    where = f"{device.site}/{device.agent}/{device.name}"
    op: Op = "device.stop" if action == "stop" else "device.resume"
    body = TaskCreate(
        name=f"{action} {device.name}",
        description=f"{action} of {where}: {reason}",
        op=op,
        target=Target(site=device.site, agent=device.agent, device=device.name),
        params={"reason": reason, "by": by},
        timeout_s=STOP_TIMEOUT_S,
        queue_timeout_s=STOP_QUEUE_TIMEOUT_S,
        priority=9 if action == "stop" else 5,
    )
    task, _ = create_task(session, body, on_run_ready=on_run_ready)
    assert task.id is not None  # flushed by create_task
    return DeviceStopped(task_id=task.id, run_id=task.latest_run_id, canceled_runs=canceled)
