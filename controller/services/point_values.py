"""The latest value of each device point, from the results of succeeded runs.

Nothing new is stored: a device's points were last seen in the result of the
newest succeeded run that read them (`modbus.read`), wrote them (`modbus.write`,
`device.stop`; a write's `expect` reads its feedback point too) or asked the device
(`serial.command`). A point written and not read back (a write without verify, a
stop's read-back that failed) shows the value written, said as not read (`read:
false`); a value seen before the device's current stop (one its agent made on link
loss has no run here) is said to be from before it (`before_stop`). Runs are read
newest first by one query (at most `MAX_SCAN` of them) streamed a page at a time,
and reading stops once every point has a value, so a device that is polled often
answers from its first page.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from tme.controller.store.models import Device, Run, Task
from tme.errors import Conflict, NotFound
from tme.fleet_schemas import DevicePublic, DeviceValues, PointValue
from tme.states import RunState

VALUE_OPS = ("modbus.read", "modbus.write", "serial.command", "device.stop")
PAGE = 200
# Bounds the scan for points no recent run touched; past it they show no value.
MAX_SCAN = 5000


class Reading(NamedTuple):
    """A point's value and unit, as a run's result gave them."""

    value: Any
    unit: str | None
    read: bool = True  # False: what a stop wrote, not read back


def find_device(
    session: Session,
    name: str,
    *,
    site: str | None = None,
    agent: str | None = None,
    sites_in: Sequence[str] | None = None,
) -> Device:
    """The one device called `name` the caller may see; `site`/`agent` pick among namesakes."""
    query = select(Device).where(Device.name == name)
    if sites_in is not None:
        query = query.where(col(Device.site).in_(sites_in))
    if site:
        query = query.where(Device.site == site)
    if agent:
        query = query.where(Device.agent == agent)
    found = list(session.exec(query.order_by(col(Device.site), col(Device.agent))).all())
    if not found:
        raise NotFound(
            f"device {name!r}{_where(site, agent)} does not exist",
            details={"device": name, **{k: v for k, v in (("site", site), ("agent", agent)) if v}},
        )
    if len(found) > 1:
        places = ", ".join(f"{d.site}/{d.agent}" for d in found)
        raise Conflict(
            f"device {name!r} is on several agents ({places}): give site and agent",
            details={"device": name, "on": [f"{d.site}/{d.agent}" for d in found]},
        )
    return found[0]


def _where(site: str | None, agent: str | None) -> str:
    """Where a device was looked for, as the caller narrowed it (" at site 'plant-2'"):
    a device of that name elsewhere must not read as no device at all."""
    of_agent = f" of agent {agent!r}" if agent else ""
    at_site = f" at site {site!r}" if site else ""
    return of_agent + at_site


def readings_of(op: str, result: dict[str, Any] | None) -> dict[str, Reading]:
    """Point name -> (value, unit) from one succeeded run's result."""
    if not isinstance(result, dict):
        return {}
    if op == "modbus.read" and isinstance(result.get("values"), dict):
        return {
            str(name): Reading(entry.get("value"), entry.get("unit"))
            for name, entry in result["values"].items()
            if isinstance(entry, dict) and "value" in entry
        }
    if op == "modbus.write" and result.get("point"):
        return _written(result)
    if op == "serial.command" and result.get("command") and "response" in result:
        return {str(result["command"]): Reading(result["response"], result.get("unit"))}
    if op == "device.stop" and isinstance(result.get("written"), dict):
        return _stopped(result["written"], result.get("read_back"))
    return {}


def _written(result: dict[str, Any]) -> dict[str, Reading]:
    """A write's point, as read back or else as written (not read), and the point its
    `expect` read while waiting for the write's effect, as last read."""
    point, unit = str(result["point"]), result.get("unit")
    readings: dict[str, Reading] = {}
    if "read_back" in result:
        readings[point] = Reading(result["read_back"], unit)
    elif "written" in result:  # the device took the write; nothing read it since
        readings[point] = Reading(result["written"], unit, read=False)
    effect = result.get("effect")
    if isinstance(effect, dict) and effect.get("point") and "value" in effect:
        readings.setdefault(str(effect["point"]), Reading(effect["value"], effect.get("unit")))
    return readings


def _stopped(written: dict[str, Any], read_back: Any) -> dict[str, Reading]:
    """A stop's points: as read back after its writes, else as written (not read)."""
    read = read_back if isinstance(read_back, dict) else {}
    return {
        str(name): Reading(read[name], None) if name in read else Reading(value, None, read=False)
        for name, value in written.items()
    }


def _typed(value: Any, kind: str | None) -> Any:
    """A serial reply is text; show it as the number its command parses to."""
    if not isinstance(value, str) or kind not in ("float", "int"):
        return value
    try:
        return int(value) if kind == "int" else float(value)
    except ValueError:
        return value


class _Read(NamedTuple):
    id: str
    task_id: int
    finished_at: datetime | None
    result: dict[str, Any] | None
    op: str


def _succeeded_runs(session: Session, device: Device | DevicePublic) -> Iterator[_Read]:
    """The device's succeeded value runs, newest first: one query, fetched `PAGE` rows at
    a time, so stopping early reads no more (an OFFSET per page sorted the runs again)."""
    query = (
        sa_select(
            col(Run.id), col(Run.task_id), col(Run.finished_at), col(Run.result), col(Task.op)
        )
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(
            col(Task.site) == device.site,
            col(Task.agent) == device.agent,
            col(Task.device) == device.name,
            col(Task.op).in_(VALUE_OPS),
            col(Run.state) == RunState.succeeded,
        )
        .order_by(col(Run.finished_at).desc(), col(Run.id).desc())
        .limit(MAX_SCAN)
        .execution_options(yield_per=PAGE)
    )
    rows = session.execute(query)
    try:
        for row in rows:
            yield _Read(*row)
    finally:
        rows.close()  # a reader that stopped early frees the cursor now


def latest_values(session: Session, device: Device | DevicePublic) -> DeviceValues:
    """Each point of `device` (profile order) with its latest value, or none yet."""
    described = [p if isinstance(p, dict) else p.model_dump() for p in device.points]
    points = [p for p in described if p.get("name")]
    wanted = {str(p["name"]) for p in points}
    latest: dict[str, PointValue] = {}
    for run in _succeeded_runs(session, device):
        for name, reading in readings_of(run.op, run.result).items():
            if name in latest or name not in wanted:
                continue
            latest[name] = PointValue(
                name=name,
                value=reading.value,
                unit=reading.unit,
                read=reading.read,
                at=run.finished_at,
                run_id=run.id,
                task_id=run.task_id,
                op=run.op,
            )
        if len(latest) == len(wanted):
            break
    stopped_at = _stopped_at(device)
    rows = []
    for point in points:
        name, kind = str(point["name"]), str(point.get("kind") or "point")
        found = latest.get(name)
        if found is None:
            rows.append(PointValue(name=name, kind=kind, unit=point.get("unit")))
            continue
        value = _typed(found.value, point.get("type")) if kind == "command" else found.value
        unit = found.unit or point.get("unit")
        before = stopped_at is not None and found.at is not None and found.at < stopped_at
        update = {"kind": kind, "value": value, "unit": unit, "before_stop": before}
        rows.append(found.model_copy(update=update))
    return DeviceValues(site=device.site, agent=device.agent, name=device.name, points=rows)


def _stopped_at(device: Device | DevicePublic) -> datetime | None:
    """When the device's current stop latched, as its agent says (None: not stopped, or
    a time that cannot be read)."""
    stopped = device.stopped
    at = stopped.get("at") if isinstance(stopped, dict) else getattr(stopped, "at", None)
    try:
        when = datetime.fromisoformat(str(at)) if at else None
    except ValueError:
        return None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
