"""The event consumer takes a site's messages only under that site's routing key, and a
task keeps its agent while a run of it is on its way (only that agent answers for it)."""

from __future__ import annotations

import pytest
from moved_runs import run_state
from sqlalchemy.engine import Engine

from tme.bus import Delivery, Reject
from tme.controller.event_consumer import EventConsumer
from tme.controller.services import runs as run_service
from tme.controller.services import tasks as service
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.errors import Conflict
from tme.protocol import Event, Presence, batch_routing_key, pack_events
from tme.schemas import TaskCreate, TaskUpdate


def _run_for(engine: Engine, site: str, agent: str) -> tuple[int, str]:
    data = TaskCreate.model_validate(
        {"name": "pump", "op": "noop", "target": {"site": site, "agent": agent}}
    )
    with session_scope(engine) as session:
        task, _ = service.create_task(session, data)
        return task.id or 0, task.latest_run_id or ""


def test_a_site_may_speak_only_for_itself(engine: Engine) -> None:
    """A gateway's RabbitMQ user may publish only under its site's routing keys; what it
    says in the message must be of that site too, else it is dead-lettered."""
    _task_id, run_id = _run_for(engine, "s2", "c")
    consumer = EventConsumer(engine, bus=None)  # type: ignore[arg-type]
    forged = Event(command_id=run_id, type="accepted", site="s2", agent="c")
    _batch, body = pack_events("s2", [forged.to_json()])
    online = Presence(site="s2", agent="c", state="online")
    deliveries = [
        Delivery(body, batch_routing_key("s1")),
        Delivery(online.to_json(), "s1.c.presence"),
        Delivery(forged.to_json(), "s2.c.accepted"),
    ]
    outcomes = consumer.handle_batch(deliveries)
    assert [type(o) for o in outcomes] == [Reject, Reject, type(None)]
    assert "site(s) ['s2']" in str(outcomes[0])
    assert run_state(engine, run_id) == "accepted"  # under its own key it counts


def test_a_broken_message_is_dead_lettered_whatever_it_raises(engine: Engine) -> None:
    consumer = EventConsumer(engine, bus=None)  # type: ignore[arg-type]
    deep = b"[" * 5000 + b"]" * 5000
    (outcome,) = consumer.handle_batch([Delivery(deep, "s1.a.accepted")])
    assert isinstance(outcome, Reject)


def test_a_task_keeps_its_agent_while_a_run_is_on_its_way(engine: Engine) -> None:
    task_id, run_id = _run_for(engine, "s1", "a1")
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run_service.transition(session, run, "queued")
    elsewhere = TaskUpdate.model_validate({"target": {"site": "s1", "agent": "a2"}})
    with (
        pytest.raises(Conflict, match="answers come from the agent it was sent to"),
        session_scope(engine) as session,
    ):
        service.update_task(session, task_id, elsewhere)
    other_device = TaskUpdate.model_validate(
        {"target": {"site": "s1", "agent": "a1", "device": "pump2"}}
    )
    with session_scope(engine) as session:  # the same agent: its answers still count
        service.update_task(session, task_id, other_device)
