"""Apply what comes back from the sites to the database, idempotently.

Agent and gateway events move runs (through `record_hop`, which tolerates
reordering and keeps final states final); presence updates sites, agents and
devices. Applying the same message twice changes nothing the second time.
"""

from __future__ import annotations

import logging

from sqlmodel import Session, select

from tme.controller.services.runs import append_log, applied_event_ids, load_runs, record_hop
from tme.controller.store.models import Agent, Device, Run, Site, utcnow
from tme.protocol import Event, Presence
from tme.states import RunState

log = logging.getLogger("tme.events")

EVENT_STATES: dict[str, RunState] = {
    "delivered": RunState.delivered,
    "accepted": RunState.accepted,
    "rejected": RunState.rejected,
    "expired": RunState.expired,
    "started": RunState.running,
    "succeeded": RunState.succeeded,
    "failed": RunState.failed,
    "timed_out": RunState.timed_out,
    "canceled": RunState.canceled,
}


def apply_messages(session: Session, messages: list[Event | Presence]) -> None:
    """Apply a batch in arrival order, loading its runs and seen event ids up front."""
    events = [m for m in messages if isinstance(m, Event)]
    runs = load_runs(session, (e.command_id for e in events))
    with_lines = [e.id for e in events if e.line is not None]
    seen = applied_event_ids(session, (e.id for e in events), with_lines)
    for message in messages:
        if isinstance(message, Event):
            apply_event(session, message, runs=runs, seen=seen)
        else:
            apply_presence(session, message)


def apply_event(
    session: Session,
    event: Event,
    *,
    runs: dict[str, Run] | None = None,
    seen: set[str] | None = None,
) -> bool:
    """Apply one run event; False when it changed nothing (duplicate, unknown run, log only).

    `runs` and `seen` come from `apply_messages` for a batch; alone, it looks them up.
    """
    run = runs.get(event.command_id) if runs is not None else session.get(Run, event.command_id)
    if run is None:
        log.warning("event %s for unknown run %s dropped", event.type, event.command_id)
        return False
    if seen is None:
        seen = applied_event_ids(session, [event.id], [event.id] if event.line is not None else [])
    state = EVENT_STATES.get(event.type)
    if event.line is not None:
        if event.id in seen:
            return False  # redelivered: its lines (and any hop) are recorded already
        append_log(session, run, event.line, at=event.at, event_id=event.id)
        if state is None:
            seen.add(event.id)  # a hop adds its id itself, in record_hop
    if state is None:  # progress, log, stop_requested: information only
        return False
    reason = event.reason or event.type
    return record_hop(
        session,
        run,
        state,
        reason=reason,
        source=event.source,
        at=event.at,
        event_id=event.id,
        result=event.result,
        seen=seen,
    )


def apply_presence(session: Session, presence: Presence) -> None:
    now = utcnow()
    site = session.get(Site, presence.site) or Site(name=presence.site)
    site.last_seen = max(site.last_seen or presence.at, presence.at)
    session.add(site)
    agent = session.exec(
        select(Agent).where(Agent.site == presence.site, Agent.name == presence.agent)
    ).first() or Agent(site=presence.site, name=presence.agent, role=presence.role)
    if agent.state_changed_at is not None and presence.at < agent.state_changed_at:
        return  # an older presence overtaken by a newer one: keep the newer state
    online = presence.state == "online"
    agent.online = online
    agent.role = presence.role
    agent.last_seen = presence.at
    agent.state_changed_at = presence.at
    session.add(agent)
    if online and presence.devices:
        _replace_devices(session, presence, now)


def _replace_devices(session: Session, presence: Presence, now: object) -> None:
    known = {
        d.name: d
        for d in session.exec(
            select(Device).where(Device.site == presence.site, Device.agent == presence.agent)
        )
    }
    for described in presence.devices:
        name = str(described.get("name", ""))
        if not name:
            continue
        device = known.pop(name, None) or Device(
            site=presence.site, agent=presence.agent, name=name
        )
        device.driver = str(described.get("driver", ""))[:32]
        device.profile = str(described.get("profile", ""))[:200]
        device.points = list(described.get("points", []))
        device.updated_at = presence.at
        session.add(device)
    for gone in known.values():
        session.delete(gone)
