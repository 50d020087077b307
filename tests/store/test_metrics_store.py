"""What /metrics reads from the database, checked against what was stored, on both
stores: runs finished by state and site, runs and commands waiting and for how long,
the fleet with its zeros, each gateway's last heartbeat."""

from __future__ import annotations

from datetime import timedelta

from moved_runs import runs_moved
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import col

from tme.controller.event_apply import apply_messages, apply_presence
from tme.controller.metrics import Metrics
from tme.controller.store.db import session_scope
from tme.controller.store.models import Outbox, Run, utcnow
from tme.protocol import Event, GatewayStatus, Presence
from tme.schemas import TaskCreate
from tme.states import RunState


def _task(name: str, site: str) -> TaskCreate:
    target = {"site": site, "agent": "skid-a"}
    return TaskCreate.model_validate({"name": name, "op": "noop", "target": target})


Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(metrics: Metrics) -> Scrape:
    """One scrape's samples (each collect is one: the finished runs count moves on)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in metrics.registry.collect()
        for sample in family.samples
    }


def _value(scrape: Scrape, name: str, **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


def test_runs_finished_count_each_final_state_by_site_once(engine: Engine) -> None:
    metrics = Metrics(engine)
    _scrape(metrics)  # the first scrape starts the count
    ok = runs_moved(engine, [_task("a", "north"), _task("b", "north")], RunState.succeeded)
    failed = runs_moved(engine, [_task("c", "south")], RunState.failed)
    late = Event(command_id=failed[0], type="succeeded", site="south", agent="skid-a")
    with session_scope(engine) as session:  # a result after the run ended: moves nothing
        assert apply_messages(session, [late]).moved == [False]
    finished = "tme_runs_finished_total"
    behind = _scrape(metrics)  # read one scrape behind: these are counted next
    assert _value(behind, finished, state="succeeded", site="north") is None
    scrape = _scrape(metrics)
    assert _value(scrape, finished, state="succeeded", site="north") == len(ok) == 2
    assert _value(scrape, finished, state="failed", site="south") == 1
    assert _value(scrape, finished, state="succeeded", site="south") is None
    assert _value(_scrape(metrics), finished, state="succeeded", site="north") == 2


def test_runs_and_commands_waiting_and_for_how_long(engine: Engine) -> None:
    (queued,) = runs_moved(engine, [_task("stuck", "north")])  # queued: an outbox row
    (running,) = runs_moved(engine, [_task("long", "north")], RunState.running)  # and one
    an_hour_ago = utcnow() - timedelta(hours=1)
    with session_scope(engine) as session:
        session.execute(update(Run).where(col(Run.id) == running).values(updated_at=an_hour_ago))
        session.execute(
            update(Outbox).where(col(Outbox.run_id) == queued).values(created_at=an_hour_ago)
        )
    scrape = _scrape(Metrics(engine))
    assert _value(scrape, "tme_database_up") == 1
    assert _value(scrape, "tme_queue_depth") == 2
    assert 3590 < (_value(scrape, "tme_outbox_oldest_age_seconds") or 0) < 3700
    assert 3590 < (_value(scrape, "tme_runs_oldest_age_seconds", state="running") or 0) < 3700
    assert (_value(scrape, "tme_runs_oldest_age_seconds", state="queued") or 0) < 60
    assert _value(scrape, "tme_runs_oldest_age_seconds", state="dispatched") == 0


def test_the_fleet_counts_zeros_and_each_online_gateways_heartbeat(engine: Engine) -> None:
    status = GatewayStatus(heartbeat_s=30, mqtt_connected=False, consuming=True, commands_pending=4)
    with session_scope(engine) as session:
        for presence in (
            Presence(site="north", agent="a1", state="offline"),
            Presence(site="north", agent="gw", role="gateway", state="online", status=status),
            Presence(site="south", agent="gw", role="gateway", state="offline"),
        ):
            apply_presence(session, presence)
    scrape = _scrape(Metrics(engine))
    assert _value(scrape, "tme_agents_online", site="north") == 0
    assert _value(scrape, "tme_agents_offline", site="north") == 1
    assert _value(scrape, "tme_gateways_online", site="north") == 1
    assert _value(scrape, "tme_gateways_offline", site="south") == 1
    assert _value(scrape, "tme_gateway_commands_pending", site="north", gateway="gw") == 4
    assert _value(scrape, "tme_gateway_mqtt_connected", site="north", gateway="gw") == 0
    assert _value(scrape, "tme_gateway_consuming", site="south", gateway="gw") is None
