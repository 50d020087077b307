"""GET /metrics for Prometheus: runs, the outbox, the fleet (metrics_store), what
this controller's own loops are doing, where a run's time goes, and driver errors.

Counts come from the database when Prometheus scrapes (a collector), so they are
right whichever process changed them; run and dispatch latency, driver errors and
the time applying results takes are observed from the events this controller
applies, confirm times from its dispatcher; the scheduler lease, held events
and failing loops are this process's own, and answered while the database is down.
Each app has its own registry, so many apps in one process (tests) never collide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from tme.controller.api.deps import PrincipalDep
from tme.controller.event_apply import Applied
from tme.controller.metrics_store import StoreCollector
from tme.controller.services.task_commit import CREATES
from tme.controller.store.models import utcnow
from tme.controller.store.sqlite_gate import gate_of
from tme.errors import Forbidden
from tme.failure_log import FailureLog
from tme.protocol import FINAL_EVENT_TYPES, Event, Presence

router = APIRouter(tags=["metrics"])

# A step of a run's path through the controller: ms on a quiet one, seconds when stuck.
STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)
# Outcomes that point at the driver or the machine rather than at the task.
DRIVER_ERROR_EVENTS = frozenset({"failed", "timed_out"})


def _write_gate(engine: Engine) -> Iterator[Metric]:
    """SQLite's one writer: how busy it is and how long writes wait for it."""
    gate = gate_of(engine)
    if gate is None:
        return
    yield from _counters(
        (
            "tme_sqlite_write_seconds",
            "Time SQLite's one writer was held (near 1/s: writes queue)",
            gate.held_s,
        ),
        ("tme_sqlite_write_wait_seconds", "Time writes waited for SQLite's writer", gate.waited_s),
        ("tme_sqlite_writes", "Write transactions on SQLite", gate.writes),
    )
    yield GaugeMetricFamily("tme_sqlite_writes_waiting", "Writes waiting now", value=gate.waiting)


def _create_groups() -> Iterator[Metric]:
    """REST creates and the transactions that carried them (group commit)."""
    yield from _counters(
        ("tme_api_create_transactions", "Transactions that stored REST creates", CREATES.writes),
        ("tme_api_creates", "Tasks created one per request", CREATES.submitted),
    )


def _counters(*counters: tuple[str, str, float]) -> Iterator[Metric]:
    for name, documentation, value in counters:
        yield CounterMetricFamily(name, documentation, value=value)


class ProcessCollector(Collector):
    """The SQLite writer and REST creates, and, with a runtime (the controller's moving
    parts), whether it holds the scheduler lease and which of its loops are failing."""

    def __init__(self, engine: Engine, runtime: Any = None) -> None:
        self.engine = engine
        self.runtime = runtime
        # the background loops whose failures tme_loop_failing shows, by name
        self.loops: dict[str, FailureLog] = {}
        if runtime is not None:
            self.loops.update(dispatch=runtime.dispatcher.failures)
            self.loops.update(scheduling=runtime.scheduling.failures)
            if getattr(runtime, "pruner", None) is not None:  # retention set
                self.loops.update(prune=runtime.pruner.failures)

    def collect(self) -> Iterator[Metric]:
        yield from _write_gate(self.engine)
        yield from _create_groups()
        if self.runtime is not None:
            yield from _runtime(self.runtime)
        if self.loops:
            failing = GaugeMetricFamily(
                "tme_loop_failing",
                "1 while a background loop's passes fail (logged once, then a line a minute)",
                labels=["loop"],
            )
            for loop, failures in self.loops.items():
                failing.add_metric([loop], int(failures.failing))
            yield failing


def _runtime(runtime: Any) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tme_scheduler_leader",
        "1 while this controller holds the scheduler lease (fires schedules, retries, timeouts)",
        value=int(runtime.scheduling.holds_lease),
    )
    yield GaugeMetricFamily(
        "tme_events_held",
        "1 while results wait, unacked, for the database (held, not dead-lettered)",
        value=int(runtime.events.outage.failing),
    )


class Metrics:
    def __init__(self, engine: Engine, runtime: Any = None) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StoreCollector(engine))
        self.process = ProcessCollector(engine, runtime)
        self.registry.register(self.process)
        self.dispatch_latency = Histogram(
            "tme_dispatch_latency_seconds",
            "From a run's creation to its acceptance by the agent",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.driver_errors = Counter(
            "tme_driver_errors",
            "Runs that failed or timed out on a machine",
            ["site", "source"],
            registry=self.registry,
        )
        # Where a run's time goes in the controller, each measured on its own clock (an
        # agent's clock may be off): the whole run, the confirms, applying the results.
        self.run_seconds = Histogram(
            "tme_run_seconds",
            "From a run's creation to its final state recorded (the agent's work included)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
            registry=self.registry,
        )
        self.confirm_seconds, self.confirmed = self._step(
            (
                "tme_dispatch_confirm_seconds",
                "From publishing a batch of commands to RabbitMQ's confirm of the last",
            ),
            ("tme_dispatch_confirmed", "Commands the broker confirmed"),
        )
        self.apply_seconds, self.applied = self._step(
            (
                "tme_event_apply_seconds",
                "Applying one batch of events and presence to the database, commit included",
            ),
            ("tme_events_applied", "Events and presence messages applied"),
        )
        self.engine = engine

    def _step(self, timed: tuple[str, str], counted: tuple[str, str]) -> tuple[Histogram, Counter]:
        """A step's histogram of seconds a batch, and the counter of what its batches held."""
        return (
            Histogram(*timed, buckets=STEP_BUCKETS, registry=self.registry),
            Counter(*counted, registry=self.registry),
        )

    def on_confirmed(self, count: int, seconds: float) -> None:
        """Dispatcher confirm listener (its thread)."""
        self.confirm_seconds.observe(seconds)
        self.confirmed.inc(count)

    def on_batch(self, messages: list[Event | Presence], applied: Applied) -> None:
        """EventConsumer batch listener (bus thread): prometheus-client is thread-safe.
        A run's creation time comes from the batch's runs, as applying read them. Only
        events that moved their run count: one delivered again (at least once, on every
        hop), for an unknown run, or after its run ended, changed nothing."""
        self.apply_seconds.observe(applied.seconds)
        self.applied.inc(len(messages))
        now = utcnow()
        accepted: dict[str, Event] = {}
        for message, moved in zip(messages, applied.moved, strict=True):
            if not isinstance(message, Event) or not moved:
                continue
            run = applied.runs.get(message.command_id)
            if message.type in FINAL_EVENT_TYPES and run is not None and run.created_at:
                self.run_seconds.observe(max(0.0, (now - run.created_at).total_seconds()))
            if message.type in DRIVER_ERROR_EVENTS:
                self.driver_errors.labels(site=message.site or "", source=message.source).inc()
            if message.type == "accepted":
                accepted.setdefault(message.command_id, message)
        for run_id, event in accepted.items():
            run = applied.runs.get(run_id)
            if run is not None and run.created_at is not None:
                latency = (event.at - run.created_at).total_seconds()
                self.dispatch_latency.observe(max(0.0, latency))


@router.get("/metrics", include_in_schema=False, openapi_extra={"x-permission": "health.read"})
def metrics(request: Request, principal: PrincipalDep) -> Response:
    """Counts of every site, unlabelled or labelled by site: for a principal of all sites
    (a scraper's token), as the fleet of a site outside a grant is not to be seen."""
    if not principal.all_sites:
        raise Forbidden(
            "metrics cover every site: they need a grant of all sites "
            f"(yours: {', '.join(principal.sites)})"
        )
    collected: Any = request.app.state.metrics
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
