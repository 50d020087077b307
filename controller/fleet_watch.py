"""Gateways that stopped sending heartbeats are shown offline.

A gateway killed, or cut off from RabbitMQ, says nothing more: its MQTT will reaches
the controller only through another gateway of its site, and with one gateway, none.
A gateway that sends heartbeats (its row has a status) and was not heard from for
SILENT_BEATS of them is marked offline, as of the last time it was heard from; its
next heartbeat, newer than that, brings it back (event_apply). Gateways that send no
heartbeats (older releases) are left as their presence says. Run by the controller
that holds the scheduler lease, with its housekeeping.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session, select

from tme.controller.store.models import Agent

log = logging.getLogger("tme.fleet")

# Heartbeats missed before a gateway is shown offline: one lost or late (a RabbitMQ
# hiccup, a controller busy with a backlog) must not flap it.
SILENT_BEATS = 3


def mark_silent_gateways(session: Session, now: datetime) -> list[Agent]:
    """Mark offline the online gateways whose last heartbeat arrived longer than
    SILENT_BEATS heartbeats ago; return them."""
    query = select(Agent).where(Agent.role == "gateway", Agent.online == True)  # noqa: E712
    silent = [gateway for gateway in session.exec(query) if _silent(gateway, now)]
    for gateway in silent:
        log.warning(
            "gateway %s/%s sent no heartbeat since %s: shown offline",
            gateway.site,
            gateway.name,
            gateway.status and gateway.status.get("received_at"),
        )
        gateway.online = False
        gateway.state_changed_at = gateway.last_seen
        session.add(gateway)
    return silent


def _silent(gateway: Agent, now: datetime) -> bool:
    status = gateway.status
    if not status or "received_at" not in status:
        return False  # sends no heartbeats
    received = datetime.fromisoformat(status["received_at"])
    every = timedelta(seconds=float(status.get("heartbeat_s") or 0))
    return every > timedelta(0) and now - received > SILENT_BEATS * every
