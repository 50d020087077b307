"""The scheduler with 10,000 schedules registered: fire lateness, idle CPU, resume time.

Figures are printed, never asserted.

    python benchmarks/bench_scheduler.py [--db sqlite:///...] [--schedules 10000]
                                         [--every 60] [--measure 20] [--idle 10]

- lateness: 10,000 interval schedules, anchors spread over one period, so fires
  are even over time; lateness = when the run was created - its slot time;
- idle CPU: 10,000 yearly cron schedules (none due): the process's CPU time over
  a quiet window, as a share of one core;
- resume: a controller stops and another starts on the same database: time until
  it holds the lease with every job loaded, and until the next due slot fires.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sqlalchemy import insert, text
from sqlalchemy.engine import Engine

from tme.controller.scheduling import Scheduling
from tme.controller.store.db import make_engine, upgrade
from tme.controller.store.models import Task, utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import TaskPolicy

SETTINGS = SimpleNamespace(tasks=SimpleNamespace(default_timeout_s=30))


def register(engine: Engine, count: int, schedule: dict[str, object], spread_s: float) -> None:
    """Insert tasks with schedules in bulk (the API would take minutes for 10,000)."""
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tasks"))
        conn.execute(text("DELETE FROM tme_scheduler_jobs")) if _has_jobs(conn) else None
        conn.execute(
            insert(table_of(Task)),
            [
                {
                    "name": f"s{i}", "op": "external", "schedule": schedule, "params": {},
                    "depends_on": [], "retries": {}, "priority": 5, "status": "idle",
                    "description": "", "created_at": now, "updated_at": now,
                }
                for i in range(count)
            ],
        )  # fmt: skip
        ids = [row[0] for row in conn.execute(text("SELECT id FROM tasks ORDER BY id"))]
        conn.execute(
            insert(table_of(TaskPolicy)),
            [
                {
                    "task_id": task_id,
                    "overlap": {"policy": "allow", "max": 100},
                    "paused": False,
                    "schedule_changed_at": now - timedelta(seconds=random.uniform(0, spread_s)),
                }
                for task_id in ids
            ],
        )


def _has_jobs(conn: object) -> bool:
    from sqlalchemy import inspect

    return "tme_scheduler_jobs" in inspect(conn).get_table_names()


def start(engine: Engine) -> tuple[Scheduling, float]:
    scheduling = Scheduling(engine, None, SETTINGS, lease_ttl_s=15)
    began = time.perf_counter()
    scheduling.start()
    while not scheduling.leading:
        time.sleep(0.01)  # benchmark poll
    return scheduling, time.perf_counter() - began


def lateness(engine: Engine, since: object) -> list[float]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT s.slot_at, r.created_at FROM schedule_slots s JOIN runs r"
                " ON r.id = s.run_id WHERE s.outcome != 'missed' AND s.slot_at >= :since"
            ),
            {"since": since},
        ).all()
    return [(_ts(created) - _ts(slot)).total_seconds() for slot, created in rows]


def _ts(value: object) -> datetime:

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="")
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--measure", type=float, default=20.0)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="tme-bench-sched-")
    url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
    engine = make_engine(url)
    upgrade(engine)
    print(f"database {engine.url.get_backend_name()}, {args.schedules} schedules")

    register(engine, args.schedules, {"every_s": args.every, "timezone": "UTC"}, args.every)
    scheduling, started_s = start(engine)
    print(f"start with {args.schedules} new schedules: leading after {started_s:.2f} s")
    measure_from = utcnow() + timedelta(seconds=2)
    time.sleep(args.measure)  # benchmark window: fires happen meanwhile
    scheduling.stop()
    late = lateness(engine, measure_from)
    rate = len(late) / max(args.measure - 2, 1)
    print(
        f"fire lateness over {len(late)} fires ({rate:.0f}/s): "
        f"p50 {pct(late, 50) * 1000:.0f} ms, p99 {pct(late, 99) * 1000:.0f} ms, "
        f"max {max(late or [0]) * 1000:.0f} ms"
    )

    scheduling, resume_s = start(engine)
    resumed_at = utcnow()
    while True:
        with engine.connect() as conn:
            fired = conn.execute(
                text("SELECT COUNT(*) FROM schedule_slots WHERE slot_at >= :t"),
                {"t": resumed_at},
            ).scalar_one()
        if fired:
            break
        time.sleep(0.01)  # benchmark poll
    first_fire_s = (utcnow() - resumed_at).total_seconds() + resume_s
    scheduling.stop()
    print(
        f"resume after a restart: leading with {args.schedules} jobs loaded in {resume_s:.2f} s,"
        f" first fire {first_fire_s:.2f} s after start"
    )

    with engine.begin() as conn:
        conn.execute(text("DELETE FROM schedule_slots"))
        conn.execute(text("DELETE FROM runs"))
    register(engine, args.schedules, {"cron": "0 0 1 1 *", "timezone": "UTC"}, 0)
    scheduling, _ = start(engine)
    time.sleep(2)  # let start-up work settle before the quiet window
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(args.idle)  # the quiet window being measured
    cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    scheduling.stop()
    print(f"controller CPU when idle with {args.schedules} schedules: {cpu * 100:.2f} % of a core")
    engine.dispose()


if __name__ == "__main__":
    main()
