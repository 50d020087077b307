"""What /metrics reads from the database when Prometheus scrapes: runs, the outbox, the
fleet. Counted there, they are right whichever process changed them.

A database that does not answer makes `tme_database_up` 0 and leaves these out; the
figures the process keeps itself (held events, the scheduler lease, failing loops)
are still reported, since an outage is when they matter.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from tme.controller.store.models import Agent, Device, Outbox, Run, RunEvent, Task, utcnow
from tme.states import ACTIVE_ORDER, FINAL_STATES, is_late

log = logging.getLogger("tme.metrics")

IN_FLIGHT = sorted(state.value for state in ACTIVE_ORDER)
FINAL = sorted(state.value for state in FINAL_STATES)
# Gateway status fields shown as gauges (the rest are in the API's status).
GATEWAY_GAUGES = (
    (
        "commands_pending",
        "Commands a gateway journaled and has not sent (agent offline, MQTT down)",
    ),
    ("commands_unanswered", "Commands a gateway sent that no agent answered yet"),
    ("events_waiting", "Events a gateway has queued for RabbitMQ"),
    ("mqtt_connected", "1 while a gateway is connected to its site's MQTT broker"),
    ("consuming", "1 while a gateway consumes its site's command queue"),
    ("journal_failing", "1 while a gateway cannot write its journal"),
)


class FinishedRuns:
    """Runs that reached each final state, by site, as a counter: the final hops in
    `run_events` since this process's first scrape, read one scrape behind, so a hop
    whose id was taken before the last scrape but committed after it (PostgreSQL takes
    ids before commit) is counted, not skipped. Late hops (a result after the run
    ended) moved nothing and are not counted."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}
        self._counted_to: int | None = None  # run_events ids up to this are counted
        self._seen_to = 0  # the newest id at the last scrape
        self._lock = threading.Lock()  # scrapes run on worker threads, maybe two at once

    def update(self, session: Session) -> None:
        with self._lock:
            self._update(session)

    def _update(self, session: Session) -> None:
        newest = int(session.exec(select(func.max(RunEvent.id))).one() or 0)
        if self._counted_to is None:
            self._counted_to = self._seen_to = newest
            return
        upper = self._seen_to
        if upper > self._counted_to:
            for from_state, to_state, site, count in session.exec(
                _final_hops(self._counted_to, upper)
            ):
                if not is_late(from_state, to_state):
                    key = (to_state, site or "")
                    self.counts[key] = self.counts.get(key, 0) + int(count)
            self._counted_to = upper
        self._seen_to = newest

    def metric(self) -> Metric:
        family = CounterMetricFamily(
            "tme_runs_finished",
            "Runs that reached a final state since the controller started, by state and site",
            labels=["state", "site"],
        )
        with self._lock:
            counts = sorted(self.counts.items())
        for (state, site), count in counts:
            family.add_metric([state, site], count)
        return family


def _final_hops(after: int, upto: int) -> Any:
    return (
        select(RunEvent.from_state, RunEvent.to_state, Task.site, func.count())
        .join(Run, col(Run.id) == col(RunEvent.run_id))
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(col(RunEvent.id) > after, col(RunEvent.id) <= upto)
        .where(col(RunEvent.to_state).in_(FINAL))
        .group_by(col(RunEvent.from_state), col(RunEvent.to_state), col(Task.site))
    )


class StoreCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.finished = FinishedRuns()

    def collect(self) -> Iterator[Metric]:
        try:
            with Session(self.engine) as session:
                metrics = list(self._read(session))
        except SQLAlchemyError as exc:
            log.warning("metrics: the database does not answer: %s", type(exc).__name__)
            yield GaugeMetricFamily("tme_database_up", _UP, value=0)
            return
        yield GaugeMetricFamily("tme_database_up", _UP, value=1)
        yield from metrics

    def _read(self, session: Session) -> Iterator[Metric]:
        now = utcnow()
        yield from _runs(session, now)
        self.finished.update(session)
        yield self.finished.metric()
        yield from _outbox(session, now)
        yield from _fleet(session)
        yield from _device_links(session)


_UP = "1 when the database answered this scrape's queries, else 0 (the rest are left out)"


def _runs(session: Session, now: datetime) -> Iterator[Metric]:
    states = session.exec(select(Run.state, func.count()).group_by(Run.state)).all()
    runs = GaugeMetricFamily("tme_runs", "Runs stored, by state", labels=["state"])
    for state, count in states:
        runs.add_metric([state], count)
    yield runs
    oldest = session.exec(
        select(Run.state, func.min(Run.updated_at))
        .where(col(Run.state).in_(IN_FLIGHT))
        .group_by(Run.state)
    ).all()
    ages = dict(oldest)
    family = GaugeMetricFamily(
        "tme_runs_oldest_age_seconds",
        "Time since the run longest in each state not final last changed (0: none)",
        labels=["state"],
    )
    for state in IN_FLIGHT:
        family.add_metric([state], _age(now, ages.get(state)))
    yield family


def _outbox(session: Session, now: datetime) -> Iterator[Metric]:
    waiting = col(Outbox.published_at).is_(None)
    depth, oldest = session.exec(
        select(func.count(), func.min(Outbox.created_at)).select_from(Outbox).where(waiting)
    ).one()
    yield GaugeMetricFamily("tme_queue_depth", "Commands waiting to be published", value=depth)
    yield GaugeMetricFamily(
        "tme_outbox_oldest_age_seconds",
        "Age of the oldest command not yet published to RabbitMQ (0: none)",
        value=_age(now, oldest),
    )


def _device_links(session: Session) -> Iterator[Metric]:
    """Each device of an online agent that an operation found answering (1) or not (0);
    a device not yet known, or whose agent is offline, has no sample (the agents'
    gauges tell of those)."""
    family = GaugeMetricFamily(
        "tme_device_link_up",
        "1 when the device answered its agent's last operation, 0 when it did not",
        labels=["site", "agent", "device"],
    )
    online = select(Agent.site, Agent.name).where(col(Agent.online), Agent.role == "agent")
    devices = select(Device.site, Device.agent, Device.name, Device.link).where(
        tuple_(col(Device.site), col(Device.agent)).in_(online)
    )
    for site, agent, name, link in session.exec(devices):
        if isinstance(link, dict) and link.get("state") in ("ok", "down"):
            family.add_metric([site, agent, name], 1 if link["state"] == "ok" else 0)
    yield family


def _fleet(session: Session) -> Iterator[Metric]:
    """Agents and gateways online and offline per site (0 included, so an alert on
    `== 0` fires), and each online gateway's last heartbeat."""
    counts: dict[tuple[str, str, bool], int] = {}
    gauges = {name: _gateway_family(name, text) for name, text in GATEWAY_GAUGES}
    sites = set()
    for agent in session.exec(select(Agent)):
        sites.add(agent.site)
        kind = "gateway" if agent.role == "gateway" else "agent"
        key = (agent.site, kind, agent.online)
        counts[key] = counts.get(key, 0) + 1
        if kind == "gateway" and agent.online and agent.status:
            for field, family in gauges.items():
                family.add_metric([agent.site, agent.name], float(agent.status.get(field) or 0))
    for kind in ("agent", "gateway"):
        for online, word in ((True, "online"), (False, "offline")):
            family = GaugeMetricFamily(
                f"tme_{kind}s_{word}", f"{kind.capitalize()}s {word}, by site", labels=["site"]
            )
            for site in sorted(sites):
                family.add_metric([site], counts.get((site, kind, online), 0))
            yield family
    yield from gauges.values()


def _gateway_family(field: str, text: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        f"tme_gateway_{field}",
        f"{text} (online gateways, last heartbeat)",
        labels=["site", "gateway"],
    )


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0
