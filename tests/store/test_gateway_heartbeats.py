"""A gateway's heartbeats keep it online with its last status; once they stop, the
controller's housekeeping shows it offline, and the next one brings it back."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.config import Settings
from tme.controller.event_apply import apply_presence
from tme.controller.fleet_watch import SILENT_BEATS, mark_silent_gateways
from tme.controller.scheduling import Scheduling
from tme.controller.store.db import session_scope
from tme.controller.store.models import Agent
from tme.protocol import GatewayStatus, Presence, utcnow

BEAT_S = 30.0


def _beat(at: datetime, pending: int = 0) -> Presence:
    status = GatewayStatus(
        heartbeat_s=BEAT_S, mqtt_connected=True, consuming=True, commands_pending=pending
    )
    return Presence(site="s1", agent="gw", role="gateway", state="online", at=at, status=status)


def _apply(engine: Engine, presence: Presence) -> None:
    with session_scope(engine) as session:
        apply_presence(session, presence)


def _gateway(engine: Engine) -> Agent:
    with Session(engine) as session:
        return session.exec(select(Agent).where(Agent.name == "gw")).one()


def _watch(engine: Engine, now: datetime) -> list[str]:
    with session_scope(engine) as session:
        return [g.name for g in mark_silent_gateways(session, now)]


def test_a_gateway_whose_heartbeats_stop_is_shown_offline_until_the_next(engine: Engine) -> None:
    first = utcnow()
    _apply(engine, _beat(first, pending=3))
    gateway = _gateway(engine)
    assert gateway.online and gateway.state_changed_at == first and gateway.last_seen == first
    assert gateway.status is not None and gateway.status["commands_pending"] == 3
    received = datetime.fromisoformat(gateway.status["received_at"])

    assert _watch(engine, received + timedelta(seconds=SILENT_BEATS * BEAT_S - 1)) == []
    assert _watch(engine, received + timedelta(seconds=SILENT_BEATS * BEAT_S + 1)) == ["gw"]
    gateway = _gateway(engine)
    assert not gateway.online and gateway.state_changed_at == first  # as last heard from

    back = first + timedelta(minutes=5)
    _apply(engine, _beat(back))
    gateway = _gateway(engine)
    assert gateway.online and gateway.state_changed_at == back


def test_heartbeats_keep_the_time_it_came_online_and_a_late_one_changes_nothing(
    engine: Engine,
) -> None:
    first = utcnow()
    for at, pending in ((first, 1), (first + timedelta(seconds=BEAT_S), 2)):
        _apply(engine, _beat(at, pending))
    _apply(engine, _beat(first - timedelta(seconds=BEAT_S), pending=9))  # delivered late
    gateway = _gateway(engine)
    assert gateway.state_changed_at == first
    assert gateway.last_seen == first + timedelta(seconds=BEAT_S)
    assert gateway.status is not None and gateway.status["commands_pending"] == 2


def test_a_gateway_that_sends_no_heartbeats_is_left_as_its_presence_says(engine: Engine) -> None:
    _apply(engine, Presence(site="s1", agent="gw", role="gateway", state="online"))
    assert _watch(engine, utcnow() + timedelta(days=1)) == []
    assert _gateway(engine).online


def test_the_schedulers_housekeeping_looks_for_silent_gateways(engine: Engine) -> None:
    _apply(engine, _beat(utcnow()))
    with session_scope(engine) as session:
        gateway = session.exec(select(Agent).where(Agent.name == "gw")).one()
        assert gateway.status is not None
        long_ago = utcnow() - timedelta(hours=1)
        gateway.status = {**gateway.status, "received_at": long_ago.isoformat()}
    Scheduling(engine, None, Settings()).step()
    assert not _gateway(engine).online
