"""End-to-end throughput and latency of TME beside raw pika and a Celery peer.

    .venv/bin/python -m benchmarks.bench_e2e [--quick] [--agents 10 100]
    python benchmarks/bench_e2e.py --quick

A task is `modbus.write` of the pump's speed setpoint with `verify: true` (write, then
read back) on a simulated plant; its latency runs from just before it is created to
the moment the controller committed its final state (a listener on the event
consumer). Everything runs against the real RabbitMQ and Mosquitto: the controller
(REST API, dispatcher, event consumer) in this process, the gateway, the agents and
the plants in child processes. In the same run and on the same broker: raw pika
publish/consume of as many messages, and a Celery worker (2 processes) doing the same
Modbus write and read-back with pymodbus. Figures are printed, never asserted.

Bursts are created three ways: in-process (the task service, 100 per transaction), through
the REST API one task per request (8 client threads), and through POST /api/v1/tasks/batch
(100 per request). Each burst row has a line of CPU milliseconds per task spent by each
process on the path (benchmarks/cpu_meter.py).

The paced rows create tasks at 100/s: through the REST API from a child process (task i
sent at i/100 s, 8 client threads, so a slow answer does not hold back the next send
while a thread is free), and in-process one at a time (the delivery path without a
request in front of it); their note says what rate was offered, lower when the
creates could not keep up.

    --only paced --rate 20 --paced-s 5     the delivery path's floor, hop by hop, and the
                                           controller's own steps (its /metrics: the mean
                                           confirm and the mean transaction applying results)
    TME_BENCH_PROFILE=/tmp/prof ...        a CPU profile (yappi) of each child process
                                           (gateway, agents, plants) into that directory
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_e2e.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cpu_meter import CpuMeter, broker_pids
from benchmarks.e2e_load import (
    REST_THREADS,
    SERVICE_CHUNK,
    create_by_rest,
    create_by_rest_batch,
    create_by_service,
    create_paced,
    create_paced_service,
    offered,
)
from benchmarks.e2e_peers import Row, celery_peer, percentiles, raw_pika
from benchmarks.e2e_procs import Child, agent_idle_rss, own_mosquitto, start_child, start_plants
from benchmarks.e2e_roles import events_queue
from tme.protocol import site_queue

AMQP = os.environ.get("TME_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MQTT = os.environ.get("TME_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
SHARED_MQTT = MQTT
FINAL = {"succeeded", "failed", "timed_out", "rejected", "expired", "canceled"}
AGENTS_PER_PROCESS = 50
PACED_RATE = 100.0  # the latency target's rate


@dataclass
class Finals:
    """Commit times of final states, fed by the controller's event consumer."""

    at: dict[str, float] = field(default_factory=dict)
    outcome: dict[str, str] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)
    # The runs wait_for still waits for: the listener wakes it once, when the last is
    # final (waking it per final state to check them all cost the controller's process
    # a burst's square).
    waiting: set[str] = field(default_factory=set)

    def listener(self, message: Any) -> None:
        if getattr(message, "type", None) not in FINAL:
            return
        now = time.time()
        with self.changed:
            if message.command_id not in self.at:
                self.at[message.command_id] = now
                self.outcome[message.command_id] = message.type
                if message.command_id in self.waiting:
                    self.waiting.discard(message.command_id)
                    if not self.waiting:
                        self.changed.notify_all()

    def wait_for(self, run_ids: list[str], timeout: float) -> bool:
        with self.changed:
            self.waiting = {r for r in run_ids if r not in self.at}
            done = self.changed.wait_for(lambda: not self.waiting, timeout)
            self.waiting = set()
            return done

    def size_bytes(self) -> int:
        """About how much memory this record holds (its dicts, keys and values)."""
        with self.changed:
            keys = list(self.at)
            values = list(self.outcome.values())
        return (
            sys.getsizeof(self.at)
            + sys.getsizeof(self.outcome)
            + sum(sys.getsizeof(k) for k in keys)
            + sys.getsizeof(0.0) * len(keys)
            + sum(sys.getsizeof(v) for v in {id(v): v for v in values}.values())
        )

    def measure(self, name: str, created: dict[str, float], timeout: float) -> Row:
        ids = list(created)
        complete = self.wait_for(ids, timeout)
        done = [r for r in ids if r in self.at]
        latencies = sorted((self.at[r] - created[r]) * 1000 for r in done)
        bad = sum(1 for r in done if self.outcome[r] != "succeeded")
        span = max(self.at[r] for r in done) - min(created.values()) if done else 0
        notes = [] if complete else [f"{len(ids) - len(done)} unfinished"]
        if bad:
            notes.append(f"{bad} not succeeded")
        return Row(
            name,
            len(ids),
            len(done) / span if span else None,
            *percentiles(latencies),
            "; ".join(notes),
        )


# --- the controller, in this process --------------------------------------------------


@contextmanager
def controller(database_url: str, finals: Finals, site: str) -> Iterator[Any]:
    import uvicorn

    from tme.config import Settings
    from tme.controller.app import create_app
    from tme.controller.store.db import make_engine, upgrade

    broker = {"url": AMQP, "events_queue": events_queue(site), "events_binding": f"{site}.#"}
    settings = Settings.model_validate(
        {"database": {"url": database_url}, "broker": broker, "http": {"port": 0}}
    )
    engine = make_engine(database_url)
    upgrade(engine)
    app = create_app(settings, engine=engine)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, name="bench-http", daemon=True)
    thread.start()
    _until(lambda: server.started, 30, "the controller")
    app.state.runtime.events.listeners.append(finals.listener)
    port = server.servers[0].sockets[0].getsockname()[1]
    from tme.controller.services.bootstrap import create_admin

    token = create_admin(engine).token
    try:
        yield app, engine, f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(30)
        engine.dispose()
        _delete_queue(events_queue(site))
        _delete_queue(site_queue(site))  # the run's site is its own: nothing waits in it


def _delete_queue(queue: str) -> None:
    import pika

    connection = pika.BlockingConnection(pika.URLParameters(AMQP))
    connection.channel().queue_delete(queue)
    connection.close()


def _progress(text: str) -> None:
    print(f"  .. {time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)  # start-up only; nothing to wait on


def _agents_online(engine: Any, site: str) -> int:
    """Device agents of the site online (the gateway reports its presence too)."""
    from sqlmodel import Session, col, func, select

    from tme.controller.store.models import Agent

    with Session(engine) as session:
        query = select(func.count()).where(
            Agent.site == site, Agent.role == "agent", col(Agent.online).is_(True)
        )
        return int(session.exec(query).one())


# --- one TME scenario ----------------------------------------------------------------


@dataclass
class Stack:
    """A running TME for a benchmark: the controller in this process, the gateway and
    the agents in children, warmed up; `groups` are the process ids by part."""

    app: Any
    engine: Any
    url: str
    token: str
    site: str
    agents: int
    finals: Finals
    groups: dict[str, list[int]]
    stack: ExitStack  # children a row starts (the REST load) stop with the rest


@contextmanager
def tme_stack(agents: int, plants: dict[int, int], db: str) -> Iterator[Stack]:
    """Start the controller (on `db`, or SQLite in a temporary folder), a gateway and
    `agents` agents on the simulated `plants` (port: process id), wait until every agent
    is online, and warm up both ways of creating tasks."""
    site = f"bench-{uuid.uuid4().hex[:8]}"
    finals = Finals()
    with tempfile.TemporaryDirectory(prefix="tme-bench-") as tmp, ExitStack() as stack:
        url_db = db or f"sqlite:///{tmp}/tme.db"
        app, engine, url, token = stack.enter_context(controller(url_db, finals, site))
        gateway = start_child(
            stack,
            "gateway",
            "--site",
            site,
            "--bus",
            AMQP,
            "--mqtt",
            MQTT,
            "--state-dir",
            f"{tmp}/gw",
        )
        plant_args = [a for p in plants for a in ("--plant-port", str(p))]
        agent_pids = []
        for first in range(0, agents, AGENTS_PER_PROCESS):
            n = min(AGENTS_PER_PROCESS, agents - first)
            agent_pids.append(start_child(
                stack, "agents", "--site", site, "--mqtt", MQTT, "--state-dir", f"{tmp}/agents",
                "--first", str(first), "--count", str(n), *plant_args,
            ).process.pid)  # fmt: skip
        _until(lambda: _agents_online(engine, site) == agents, 120, f"{agents} agents online")
        _progress(f"TME {agents} agents: online")
        finals.measure("warm-up", create_by_service(app, site, agents, 0, 50), 60)
        # and the REST path, whose first requests after a start are slower (see
        # controller/app.py): the rows measure a controller that has served before
        rest_warm_up, _ = create_by_rest(url, token, site, agents, 40, stack, first=500)
        finals.measure("warm-up", rest_warm_up, 60)
        groups = {
            "controller": [os.getpid()],
            "gateway": [gateway.process.pid],
            "agents": agent_pids,
            "plants": list(plants.values()),
            **broker_pids(),
        }
        yield Stack(app, engine, url, token, site, agents, finals, groups, stack)


def tme_scenario(
    agents: int,
    count: int,
    paced_s: float,
    plants: dict[int, int],
    db: str,
    parts: str = "all",
    rate: float = PACED_RATE,
) -> list[Row]:
    """`plants` maps each simulated plant's port to its process id; `parts` is "all",
    "bursts" or "paced"; the paced rows create `rate` tasks per second."""
    rows: list[Row] = []
    with tme_stack(agents, plants, db) as running:
        app, engine, url, token = running.app, running.engine, running.url, running.token
        site, finals, stack = running.site, running.finals, running.stack
        label = f"TME {agents} agents"
        meter = CpuMeter(running.groups)

        def burst(name: str, create: Any) -> Row:
            meter.start()
            created = create()
            row = finals.measure(f"{label}, {name}", created, 180)
            meter.stop()
            row.cpu = meter.report(len(created), len(created) / row.rate if row.rate else 0.0)
            rows.append(row)
            return row

        if parts in ("all", "bursts"):
            bursts(burst, label, app, url, token, site, agents, count, stack)
        if parts in ("all", "paced"):
            for how, create in (
                ("REST", lambda: create_paced(url, token, site, agents, paced_s, rate, stack)),
                ("service", lambda: create_paced_service(app, site, agents, paced_s, rate)),
            ):
                meter.start()
                began = time.monotonic()
                steps = ControllerSteps(app.state.metrics.registry)
                created = create()
                row = finals.measure(f"{label}, {how} paced {rate:.0f}/s", created, 120)
                meter.stop()
                row.cpu = meter.report(len(created), time.monotonic() - began)
                row.note = "; ".join(filter(None, [offered(created), row.note]))
                rows.append(row)
                print_hops(f"{label}, {how} paced", hop_breakdown(engine, created, finals))
                print(steps.report())
    return rows


def bursts(
    burst: Any,
    label: str,
    app: Any,
    url: str,
    token: str,
    site: str,
    agents: int,
    count: int,
    stack: ExitStack,
) -> None:
    """The three throughput rows: in-process, REST one per request, REST batches."""
    burst("service create", lambda: create_by_service(app, site, agents, 1_000_000, count))
    api: list[float] = []

    def rest() -> dict[str, float]:
        created, rate = create_by_rest(url, token, site, agents, count, stack)
        api.append(rate)
        return created

    row = burst(f"REST create ({REST_THREADS} thr)", rest)
    row.note = "; ".join(filter(None, [f"API took {api[0]:,.0f} creates/s", row.note]))
    burst(
        f"REST batch create ({SERVICE_CHUNK}/req)",
        lambda: create_by_rest_batch(url, token, site, agents, 2_000_000, count),
    )


def hop_breakdown(
    engine: Any, created: dict[str, float], finals: Finals
) -> list[tuple[str, float, float]]:
    """Median and p99 time spent in each hop of the runs (from their recorded events)."""
    from sqlmodel import Session, col, select

    from tme.controller.store.models import RunEvent

    spans: dict[str, list[float]] = {}
    ids = list(created)
    with Session(engine) as session:
        events: dict[str, list[RunEvent]] = {}
        for start in range(0, len(ids), 500):
            query = select(RunEvent).where(col(RunEvent.run_id).in_(ids[start : start + 500]))
            for event in session.exec(query):
                events.setdefault(event.run_id, []).append(event)
    for run_id, hops in events.items():
        previous, at = "created", created[run_id]
        for event in sorted(hops, key=lambda e: (e.at, e.id or 0)):
            now = event.at.timestamp()
            spans.setdefault(f"{previous} -> {event.to_state}", []).append((now - at) * 1000)
            previous, at = event.to_state, now
        if run_id in finals.at:
            spans.setdefault(f"{previous} -> recorded", []).append((finals.at[run_id] - at) * 1000)
    return [(name, *percentiles(sorted(values))) for name, values in spans.items()]  # type: ignore[misc]


class ControllerSteps:
    """The controller's own steps from its /metrics registry, over a row: the broker's
    confirms and the transactions that applied the results (their mean times and
    sizes), beside the hops, which are timed on several machines' clocks."""

    NAMES = (
        "tme_dispatch_confirm_seconds_sum",
        "tme_dispatch_confirm_seconds_count",
        "tme_dispatch_confirmed_total",
        "tme_event_apply_seconds_sum",
        "tme_event_apply_seconds_count",
        "tme_events_applied_total",
    )

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        self.before = self._read()

    def _read(self) -> dict[str, float]:
        return {name: self.registry.get_sample_value(name) or 0.0 for name in self.NAMES}

    def report(self) -> str:
        now = self._read()
        d = {name: now[name] - self.before[name] for name in self.NAMES}
        confirms = d["tme_dispatch_confirm_seconds_count"]
        applies = d["tme_event_apply_seconds_count"]
        if not confirms or not applies:
            return "    controller steps: none observed"
        confirm_ms = d["tme_dispatch_confirm_seconds_sum"] / confirms * 1000
        apply_ms = d["tme_event_apply_seconds_sum"] / applies * 1000
        return (
            f"    controller steps (mean): confirm {confirm_ms:.1f} ms a publish of"
            f" {d['tme_dispatch_confirmed_total'] / confirms:.1f} commands; apply"
            f" {apply_ms:.1f} ms a transaction of {d['tme_events_applied_total'] / applies:.1f}"
            " messages"
        )


def print_hops(label: str, hops: list[tuple[str, float, float]]) -> None:
    print(f"\n  hops of {label} (ms, p50 / p99):")
    for name, p50, p99 in hops:
        print(f"    {name:<32} {p50:8.1f} {p99:8.1f}")


# --- the run -------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    def ms(v: float | None) -> str:
        return f"{v:8.1f}" if v is not None else f"{'-':>8}"

    print(f"\n{'scenario':<42} {'n':>6} {'per s':>9} {'p50 ms':>8} {'p99 ms':>8}  note")
    print("-" * 100)
    for r in rows:
        rate = f"{r.rate:9,.0f}" if r.rate is not None else f"{'-':>9}"
        print(f"{r.name:<42} {r.count:>6} {rate} {ms(r.p50)} {ms(r.p99)}  {r.note}")
        if r.cpu:
            print(f"{'':<6}{r.cpu}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short run (fewer tasks)")
    parser.add_argument("--agents", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--count", type=int, help="tasks per throughput run")
    parser.add_argument("--database", default="", help="controller DB URL (default: SQLite)")
    parser.add_argument("--skip-peers", action="store_true")
    parser.add_argument(
        "--only", choices=("all", "bursts", "paced"), default="all", help="which TME rows to run"
    )
    parser.add_argument("--rate", type=float, default=PACED_RATE, help="paced rows' tasks/s")
    parser.add_argument("--paced-s", type=float, help="seconds per paced row (3 quick, 10)")
    parser.add_argument(
        "--mqtt",
        default="own",
        help="MQTT broker URL, or 'own' (default): start a Mosquitto configured for a site",
    )
    args = parser.parse_args(argv)
    count = args.count or (1_000 if args.quick else 5_000)
    paced_s = args.paced_s or (3.0 if args.quick else 10.0)
    rows: list[Row] = []
    global MQTT
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tme-bench-mq-") as mq:
        MQTT = own_mosquitto(stack, Path(mq)) if args.mqtt == "own" else args.mqtt
        print(f"MQTT broker: {MQTT}", file=sys.stderr)
        plants = start_plants(stack)
        ports = list(plants)
        if not args.skip_peers:
            rows.append(raw_pika(AMQP, count))
            print_table(rows[-1:])
            rows.extend(celery_peer(AMQP, count, paced_s, args.rate, ports[0]))
            print_table(rows[-2:])
        for agents in args.agents:
            rows.extend(
                tme_scenario(agents, count, paced_s, plants, args.database, args.only, args.rate)
            )
            print_table(rows[-5:])
        rss = agent_idle_rss(MQTT, ports[0])
        rows.append(Row("agent idle RSS (1 modbus device)", 1, None, note=f"{rss:.1f} MB"))
    print(f"\n== end-to-end, {count} tasks per burst, {os.cpu_count()} CPUs ==")
    print_table(rows)
    summarise(rows, args.rate)


def summarise(rows: list[Row], rate: float = PACED_RATE) -> None:
    by = {r.name: r for r in rows}
    celery = by.get("Celery 2 procs, write+verify")
    print("\ntargets (issue 3):")
    for r in rows:
        if r.name.startswith("TME") and "paced" not in r.name and r.rate:
            vs = f", {r.rate / celery.rate:.2f}x Celery" if celery and celery.rate else ""
            ok = r.rate >= 1500 and (not celery or r.rate >= 2 * (celery.rate or 0))
            mark = "MET " if ok else "MISS"
            print(f"  {mark} >= 1,500/s and >= 2x Celery: {r.name}: {r.rate:,.0f}/s{vs}")
        if rate != PACED_RATE and "TME" in r.name and "paced" in r.name:
            print(f"  (latency target is at {PACED_RATE:.0f}/s: {r.name} is not compared)")
        elif "TME" in r.name and "paced" in r.name and r.p50 is not None and r.p99 is not None:
            ok = r.p50 <= 10 and r.p99 <= 50
            mark, got = "MET " if ok else "MISS", f"{r.p50:.1f} / {r.p99:.1f} ms"
            print(f"  {mark} p50 <= 10 ms, p99 <= 50 ms: {r.name}: {got}")
        if r.name.startswith("agent idle RSS"):
            mb = float(r.note.split()[0])
            print(f"  {_met(mb <= 40)} agent idle RSS <= 40 MB: {mb:.1f} MB")


def _met(ok: bool) -> str:
    return "MET " if ok else "MISS"


__all__ = ["Child", "main"]

if __name__ == "__main__":
    main()
