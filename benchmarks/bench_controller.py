"""The controller's CPU per task, stage by stage, with no network: where a task's
milliseconds go before any broker or agent is involved.

    .venv/bin/python -m benchmarks.bench_controller [--tasks 2000]

Each stage runs twice on the same database kind in the same run: the way the
controller does it, and the one-object-at-a-time ORM way it replaced (the baseline):
- create: `create_tasks`, 100 tasks per transaction, vs `create_task` once per task;
- dispatch: confirmed outbox rows recorded by HopBatch vs `record_hop` per run;
- hops: delivered, accepted, started, succeeded applied by `apply_messages` (HopBatch)
  in batches of 200 vs ORM objects moved by `record_hop` per event (runs and tasks
  still read up front per batch, each event id looked up as it is applied);
- settle: the workflow step for every finished run (batched lookups only);
- create, 1 per tx: one task per transaction, as a REST create does, its rows built
  before the first write (StartBatch) vs the run-ready hook given ORM objects; below
  the table, how long each such create held SQLite's writer slot (the write gate),
  which the dispatcher and the event consumer wait for;
- 4 hops, 1 per tx: those tasks' four hops applied one event per transaction, as the
  event consumer does when events arrive apart (at 100 tasks/s, most batches hold one),
  including settling the finished run;
- audit row, 1 per change: the row each REST change appends (HMAC chain, its own
  transaction), controller only.
The ten agents the tasks target are online with the pump they drive (their presence
applied first), so each create is checked against it as on a running fleet.
Figures are CPU milliseconds of this thread per task; printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from benchmarks.e2e_roles import PROFILES, agent_name, task_fields
from tme.bus.registry import open_bus
from tme.config import Settings
from tme.controller.dispatcher import UNPUBLISHED, Dispatcher
from tme.controller.event_apply import EVENT_STATES, apply_messages, apply_presence
from tme.controller.run_ready import RunReady
from tme.controller.services import audit
from tme.controller.services.runs import load_runs, record_hop
from tme.controller.services.tasks import create_task, create_tasks
from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.models import Outbox, utcnow
from tme.controller.store.sqlite_gate import gate_of
from tme.controller.workflow import settle_pending
from tme.drivers.profile import load_profile
from tme.protocol import Event, Presence
from tme.schemas import TaskCreate
from tme.states import RunState

SITE = "bench-site"
CREATE_CHUNK, DISPATCH_CHUNK, EVENT_CHUNK = 100, 500, 200
HOPS = ("delivered", "accepted", "started", "succeeded")
LONE = "create, 1 per tx"
LONE_HOPS = "4 hops, 1 per tx"
AUDITED = "audit row, 1 per change"
ALONE = (LONE, LONE_HOPS, AUDITED)  # stages of a task on its own, apart from the batched path


class Stages:
    """CPU ms per task of each (stage, way) measured."""

    def __init__(self, tasks: int) -> None:
        self.tasks = tasks
        self.ms: dict[tuple[str, str], float] = {}
        self.gate_ms: dict[str, float] = {}  # SQLite's writer slot held per lone create

    @contextmanager
    def stage(self, name: str, way: str) -> Iterator[None]:
        started = time.thread_time()
        yield
        self.ms[(name, way)] = (time.thread_time() - started) * 1000 / self.tasks

    def print(self) -> None:
        names = list(dict.fromkeys(name for name, _way in self.ms))
        print(f"\n{'stage':<22} {'controller':>11} {'baseline':>11}  (CPU ms per task)")
        print("-" * 60)
        for name in names:
            now, before = self.ms.get((name, "controller")), self.ms.get((name, "baseline"))
            cells = [f"{v:11.3f}" if v is not None else f"{'-':>11}" for v in (now, before)]
            ratio = f"  {before / now:4.1f}x less" if now and before else ""
            print(f"{name:<22} {cells[0]} {cells[1]}{ratio}")
        for way in ("controller", "baseline"):  # a task's path: lone creates are apart
            total = sum(v for (n, w), v in self.ms.items() if w == way and n not in ALONE)
            print(f"{'total, ' + way:<22} {total:11.3f}")
        held = "  ".join(f"{way} {ms:.3f}" for way, ms in self.gate_ms.items())
        print(f"\nwrite gate held per lone create (ms, wall): {held}")


def run_ids_created(engine: Any, hook: Any, tasks: int, batched: bool) -> list[str]:
    items = [TaskCreate.model_validate(task_fields(SITE, 10, i)) for i in range(tasks)]
    ids: list[str] = []
    for start in range(0, tasks, CREATE_CHUNK):
        chunk = items[start : start + CREATE_CHUNK]
        with session_scope(engine) as session:
            if batched:
                made = create_tasks(session, chunk, on_run_ready=hook)
            else:
                made = [create_task(session, item, on_run_ready=hook) for item in chunk]
            ids.extend(str(task.latest_run_id) for task, _ in made)
    return ids


def created_one_per_transaction(
    engine: Any, hook: Any, tasks: int, batched: bool
) -> tuple[float, list[str]]:
    """Each task in a transaction of its own, as a REST create does; returns the write
    gate's hold per task in ms (wall) and the runs. The baseline hands the hook ORM objects."""
    plain = (lambda session, run, task: hook(session, run, task)) if not batched else hook
    gate = gate_of(engine)
    held = gate.held_s if gate else 0.0
    ids = []
    for i in range(tasks):
        item = TaskCreate.model_validate(task_fields(SITE, 10, 1_000_000 + i))
        with session_scope(engine) as session:
            ((task, _),) = create_tasks(session, [item], on_run_ready=plain)
            ids.append(str(task.latest_run_id))
    return ((gate.held_s if gate else 0.0) - held) * 1000 / tasks, ids


def dispatch_recorded(engine: Any, batched: bool) -> None:
    dispatcher = Dispatcher(engine, open_bus("memory://"))  # records only: nothing is published
    while True:
        with session_scope(engine) as session:
            rows = list(session.execute(UNPUBLISHED).all())
        if not rows:
            return
        if batched:  # as if the broker had confirmed them all: held, then recorded together
            now = utcnow()
            dispatcher._confirmed.update((row.id, (row, now)) for row in rows)
            dispatcher.record_confirmed()
            continue
        with session_scope(engine) as session:
            runs = load_runs(session, (row.run_id for row in rows))
            now = utcnow()
            query = select(Outbox).where(col(Outbox.id).in_([row.id for row in rows]))
            for outbox in session.execute(query).scalars():
                outbox.published_at = now
                run = runs[outbox.run_id]
                record_hop(session, run, RunState.dispatched, reason="confirmed by broker", at=now)


def hops_applied(
    engine: Any, run_ids: list[str], kind: str, batched: bool, chunk_size: int = EVENT_CHUNK
) -> None:
    # Run i belongs to task i (or 1,000,000 + i) of task_fields, on agent i mod 10: its
    # events come from that agent, the only one whose answers move it.
    events = [
        Event(command_id=r, type=kind, site=SITE, agent=agent_name(i % 10))  # type: ignore[arg-type]
        for i, r in enumerate(run_ids)
    ]
    for start in range(0, len(events), chunk_size):
        chunk = events[start : start + chunk_size]
        with session_scope(engine) as session:
            if batched:
                moved = apply_messages(session, list(chunk)).moved
                if not all(moved):  # a figure of events that changed nothing means nothing
                    raise RuntimeError(f"{moved.count(False)} {kind} events moved no run")
                continue
            runs = load_runs(session, (e.command_id for e in chunk))
            for e in chunk:
                record_hop(session, runs[e.command_id], EVENT_STATES[kind], event_id=e.id)


def audited(engine: Any, tasks: int) -> None:
    """The audit row a REST create leaves, appended on its own (no other writer waiting)."""
    details = {"status": 201, "fields": ["name", "op", "target", "params"], "token_id": 1}
    for i in range(tasks):
        audit.record(
            engine,
            "tasks.create:create_task",
            actor="admin",
            target="POST /api/v1/tasks",
            client="127.0.0.1",
            details={**details, "location": f"/api/v1/tasks/{i}"},
        )


def settled(engine: Any, hook: Any) -> None:
    while True:
        with session_scope(engine) as session:
            if not settle_pending(session, hook):
                return


def fleet_published(engine: Any, agents: int = 10) -> None:
    """The bench agents online with the pump they drive, as their presence says: each
    create is checked against it (fleet_checks), as on a running fleet."""
    pump = {
        "name": "pump1",
        "driver": "modbus_tcp",
        "profile": "pump",
        "points": load_profile(PROFILES / "pump.yaml").public_points(),
    }
    with session_scope(engine) as session:
        for i in range(agents):
            presence = Presence(site=SITE, agent=agent_name(i), state="online", devices=[pump])
            apply_presence(session, presence)


def measure(database: str, tasks: int, way: str, stages: Stages) -> None:
    engine = make_engine(database)
    upgrade(engine)
    fleet_published(engine)
    hook = RunReady(Settings.model_validate({"database": {"url": database}}), threading.Event())
    batched = way == "controller"
    with stages.stage("create", way):
        ids = run_ids_created(engine, hook, tasks, batched)
    with stages.stage("dispatch confirmed", way):
        dispatch_recorded(engine, batched)
    for kind in HOPS:
        with stages.stage(f"hop {kind}", way):
            hops_applied(engine, ids, kind, batched)
    if batched:
        with stages.stage("settle", way):
            settled(engine, hook)
    with stages.stage(LONE, way):
        stages.gate_ms[way], lone = created_one_per_transaction(engine, hook, tasks, batched)
    with stages.stage(LONE_HOPS, way):  # as events arrive at a low rate: one per batch
        for kind in HOPS:
            hops_applied(engine, lone, kind, batched, chunk_size=1)
    if batched:
        with stages.stage(AUDITED, way):
            audited(engine, tasks)
    engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args(argv)
    stages = Stages(args.tasks)
    with tempfile.TemporaryDirectory(prefix="tme-bench-ctl-") as tmp:
        for way in ("controller", "baseline"):  # each on a new SQLite file of its own
            measure(f"sqlite:///{Path(tmp) / way}.db", args.tasks, way, stages)
    print(f"\n== controller stages, {args.tasks} tasks, SQLite ==")
    stages.print()


if __name__ == "__main__":
    main()
