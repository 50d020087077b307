"""Apply what comes back from the sites to the database, idempotently.

Agent and gateway events move runs by the rules of `runs.record_hop` (reordering
tolerated, final states kept final), written in bulk by HopBatch; presence updates
sites, agents and devices. Applying the same message twice changes nothing the
second time.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime

import msgspec
from sqlalchemy import bindparam, update
from sqlmodel import Session, col, select

from tme.controller.services.hop_batch import HopBatch, RunView
from tme.controller.services.runs import Hop, applied_event_ids
from tme.controller.store.models import Agent, Device, Outbox, Site, utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import Finished, settle_finished
from tme.first_pass_text import first_pass_lines, first_pass_of
from tme.protocol import Command, Event, Presence, ProtocolError
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


STOP_FAILED = frozenset({"rejected", "expired", "failed", "timed_out"})
LINKS = table_of(RunLink)
# Built once: the agent said these runs never touched the machine (a retry may follow).
NOT_STARTED = (
    update(LINKS)
    .where(LINKS.c.run_id.in_(bindparam("ids", expanding=True)))
    .values(not_started=True)
)


@dataclass(slots=True)
class Applied:
    moved: list[bool]  # for each message, whether it moved a run
    to_settle: int  # runs made final here that are left for the workflow pass
    runs: dict[str, RunView]  # the batch's runs by id, as applying left them
    seconds: float = 0.0  # how long the transaction took, commit included (the consumer's)


def apply_messages(session: Session, messages: list[Event | Presence]) -> Applied:
    """Apply a batch in arrival order.

    The batch's runs and the event ids already applied are read up front, and every
    hop and log line is written at the end in one statement per table (HopBatch).
    Runs that reach a final state are settled in the same transaction when settling
    only marks their link (workflow.settle_finished); the others are counted in
    `to_settle`, for the workflow pass.
    """
    events = [m for m in messages if isinstance(m, Event)]
    batch = HopBatch(session, (e.command_id for e in events))
    # A stop's first writes add a line too (_apply_event): applied once, as a line is.
    with_lines = [e.id for e in events if e.line is not None or _says_first_pass(e)]
    seen = applied_event_ids(session, (e.id for e in events), with_lines)
    moved, not_started = [], set()
    unknown: list[Event] = []
    for message in messages:
        if isinstance(message, Event):
            moved.append(_apply_event(batch, message, seen, unknown))
            if moved[-1] and message.not_started:
                not_started.add(message.command_id)
        else:
            apply_presence(session, message)
            moved.append(False)
    batch.write()
    if unknown:
        _note_unknown(session, unknown)
    if not_started:
        session.execute(NOT_STARTED, {"ids": sorted(not_started)})
    # Taken as linked: settling marks only existing links, and one missing counts as left.
    finished = (Finished(r.id, r.task_id, r.state, r.id) for r in batch.finished)
    return Applied(moved, settle_finished(session, finished), batch.runs)


def apply_event(session: Session, event: Event) -> bool:
    """Apply one run event; False when it changed nothing (duplicate, unknown run, log only)."""
    (moved,) = apply_messages(session, [event]).moved
    return moved


def _apply_event(batch: HopBatch, event: Event, seen: set[str], unknown: list[Event]) -> bool:
    run = batch.runs.get(event.command_id)
    if run is None:
        unknown.append(event)  # said once the batch is read: a stop request's answer?
        return False
    if (event.site, event.agent) != (run.site, run.agent):
        # Only the agent a run was sent to (or its site's gateway, speaking for it)
        # answers for it: another agent's word, broken or forged, changes nothing.
        log.warning(
            "event %s of %s/%s for run %s of %s/%s dropped",
            event.type,
            event.site,
            event.agent,
            run.id,
            run.site,
            run.agent,
        )
        return False
    state = EVENT_STATES.get(event.type)
    if event.id in seen:
        return False  # redelivered: its lines and its hop are recorded already
    seen.add(event.id)
    if event.line is not None:
        batch.log(event.command_id, event.line, at=event.at, event_id=event.id)
    if state is None:  # progress, log, stop_requested: information only
        if event.type == "progress" and event.result is not None:
            kept = batch.progress(event.command_id, event.result)
            first = first_pass_of(event.result)
            if kept and first is not None:  # said in its log too: a page shows it as it comes
                text = "\n".join(first_pass_lines(first, ended=False))
                batch.log(event.command_id, text, at=event.at, event_id=event.id)
        return False
    hop = Hop(state, event.reason or event.type, event.source, event.at, event.id, event.result)
    return batch.record(event.command_id, hop)


def _says_first_pass(event: Event) -> bool:
    """A progress event saying a stop's first writes (a line in the run's log)."""
    return event.type == "progress" and first_pass_of(event.result) is not None


def _note_unknown(session: Session, events: list[Event]) -> None:
    """Log the events of no run: the answers an agent gives to a stop request (the cancel
    command of a running run, whose own events say how it stopped) at debug level, the
    others as a warning, as they are dropped."""
    ids = sorted({e.command_id for e in events})
    rows = session.exec(select(Outbox.run_id, Outbox.body).where(col(Outbox.run_id).in_(ids)))
    stops = {}
    for command_id, body in rows:
        with contextlib.suppress(ProtocolError):
            command = Command.from_json(body)
            if command.op == "cancel":
                stops[command_id] = command.params.get("command_id")
    for event in events:
        if event.command_id in stops:
            # a stop that did not happen is worth a line: its run goes on to its timeout
            level = logging.INFO if event.type in STOP_FAILED else logging.DEBUG
            log.log(
                level,
                "event %s of the stop request %s for run %s%s",
                event.type,
                event.command_id,
                stops[event.command_id],
                f": {event.reason}" if event.reason else "",
            )
        else:
            log.warning("event %s for unknown run %s dropped", event.type, event.command_id)


def apply_presence(session: Session, presence: Presence) -> None:
    now = utcnow()
    site = session.get(Site, presence.site) or Site(name=presence.site)
    site.last_seen = max(site.last_seen or presence.at, presence.at)
    session.add(site)
    agent = session.exec(
        select(Agent).where(Agent.site == presence.site, Agent.name == presence.agent)
    ).first() or Agent(site=presence.site, name=presence.agent, role=presence.role)
    if presence.status is not None:
        _apply_heartbeat(session, agent, presence, now)
        return
    online = presence.state == "online"
    if _overtaken(agent, presence.at, online):
        return
    agent.online = online
    agent.role = presence.role
    agent.last_seen = max(agent.last_seen or presence.at, presence.at)
    agent.state_changed_at = presence.at
    session.add(agent)
    if online and presence.devices:
        _replace_devices(session, presence, now)


def _apply_heartbeat(session: Session, agent: Agent, presence: Presence, now: datetime) -> None:
    """A gateway's heartbeat: it is alive now, and this is how it does. An offline
    gateway comes online with a heartbeat newer than the change; an online one keeps
    the time it came online. The newest heartbeat's status is kept, with when it
    arrived (fleet_watch shows the gateway offline once they stop)."""
    assert presence.status is not None
    if agent.last_seen is not None and presence.at < agent.last_seen:
        return  # an older heartbeat, delivered late
    agent.role = presence.role
    agent.last_seen = presence.at
    agent.status = {**msgspec.to_builtins(presence.status), "received_at": now.isoformat()}
    if not agent.online and not _overtaken(agent, presence.at, True):
        agent.online = True
        agent.state_changed_at = presence.at
    session.add(agent)


def _overtaken(agent: Agent, at: datetime, online: bool) -> bool:
    """Whether a newer presence was applied: keep its state. An edge process stamps the
    `online` of a connection and the will that ends it with the same time
    (tme.agents.presence), so for the same time offline wins, whichever came first."""
    if agent.state_changed_at is None:
        return False
    return at < agent.state_changed_at or (
        at == agent.state_changed_at and online and not agent.online
    )


LOCKOUT_FIELDS = {"by": 64, "reason": 200, "at": 40}  # kept of each, at most (characters)


def _lockout_of(said: object) -> dict[str, str] | None:
    """A device's lockout as its agent said it; anything it said that is not one, of an
    agent of any version, still counts as locked out (the agent refuses, whatever this says)."""
    if said is None:
        return None
    said = said if isinstance(said, dict) else {}
    return {k: str(said.get(k) or "unknown")[:n] for k, n in LOCKOUT_FIELDS.items()}


LINK_FIELDS = {"since": 40, "error": 300}


def _link_of(said: object) -> dict[str, str] | None:
    """A device's link as its agent said it; None when it said none it could read."""
    if not isinstance(said, dict) or said.get("state") not in ("ok", "down"):
        return None
    return {
        "state": said["state"],
        **{k: str(said.get(k) or "")[:n] for k, n in LINK_FIELDS.items()},
    }


def _seconds_of(said: object) -> float | None:
    """A positive, finite number of seconds an agent said; None for anything else."""
    if isinstance(said, bool) or not isinstance(said, int | float):
        return None
    return float(said) if 0 < said < float("inf") else None


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
        device.lockout = _lockout_of(described.get("lockout"))
        device.stopped = _lockout_of(described.get("stopped"))  # the same fields
        device.link = _link_of(described.get("link"))
        device.stop_on_link_loss_s = _seconds_of(described.get("stop_on_link_loss_s"))
        device.updated_at = presence.at
        session.add(device)
    for gone in known.values():
        session.delete(gone)
