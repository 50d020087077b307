"""Presence applied in any order keeps the newest state, and a will ends the connection
whose `online` it shares a time with (tme.agents.presence)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.controller.event_apply import apply_presence
from tme.controller.store.db import session_scope
from tme.controller.store.models import Agent
from tme.protocol import Presence, utcnow


def _apply(engine: Engine, *presences: Presence) -> bool:
    """Each presence in its own transaction, as they arrive; the agent's state after."""
    for presence in presences:
        with session_scope(engine) as session:
            apply_presence(session, presence)
    with Session(engine) as session:
        return session.exec(select(Agent.online).where(Agent.name == "a1")).one()


def _said(state: str, at: object) -> Presence:
    return Presence(site="s1", agent="a1", state=state, at=at)  # type: ignore[arg-type]


def test_a_will_after_the_online_of_its_connection_says_offline(engine: Engine) -> None:
    connected = utcnow()
    assert _apply(engine, _said("online", connected)) is True
    assert _apply(engine, _said("offline", connected)) is False


def test_a_will_overtaken_by_its_online_still_says_offline(engine: Engine) -> None:
    connected = utcnow()
    assert _apply(engine, _said("offline", connected), _said("online", connected)) is False


def test_the_next_connection_is_online_again_and_an_old_will_changes_nothing(
    engine: Engine,
) -> None:
    first = utcnow()
    second = first + timedelta(seconds=3)
    late = [_said("offline", first)]  # the first connection's will, arriving last
    said = [_said("online", first), _said("offline", first), _said("online", second), *late]
    assert _apply(engine, *said) is True
