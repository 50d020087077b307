"""The reports summary is counted by the database, on SQLite and on PostgreSQL, and
gives what counting every run in Python gave (nearest-rank percentiles included)."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tme.controller import reports
from tme.controller.store.models import Run, Task, utcnow

END = utcnow()
START = END - timedelta(days=7)


def _runs(engine: Engine) -> None:
    """Runs of several ops, agents and sites: some never started, some canceled,
    failures with blank, short and very long reasons, finished in different hours."""
    rng = random.Random(7)
    tasks = [
        Task(name="read", op="modbus.read", site="plant-x", agent="skid-a"),
        Task(name="write", op="modbus.write", site="plant-x", agent="skid-b"),
        Task(name="check", op="external", site="plant-y"),
        Task(name="once", op="noop", site="plant-y", agent="line-c"),
    ]
    reasons = ["", "modbus timeout", "x" * 300 + "a", "x" * 300 + "b", "device busy"]
    with Session(engine) as session:
        session.add_all(tasks)
        session.flush()
        for task, count in zip(tasks, (61, 20, 7, 1), strict=True):
            for i in range(count):
                state = rng.choice(["succeeded", "succeeded", "failed", "timed_out", "canceled"])
                finished = END - timedelta(hours=(i % 9) * 3 + 1, seconds=i)
                seconds = rng.randrange(1, 500_000) / 1000
                started = None if i % 6 == 5 else finished - timedelta(seconds=seconds)
                reason = rng.choice(reasons) if state != "succeeded" else "done"
                session.add(
                    Run(
                        task_id=task.id or 0,
                        state=state,
                        reason=reason,
                        started_at=started,
                        finished_at=finished,
                    )
                )
            session.add(Run(task_id=task.id or 0, state="running", started_at=START))
        old = Run(task_id=tasks[0].id or 0, state="failed", finished_at=START - timedelta(1))
        session.add(old)  # before the period
        session.commit()


def _counted_in_python(engine: Engine, group_by: str, sites: list[str] | None) -> dict[str, Any]:
    """The report as it was computed before: every run of the period in Python."""
    finals = {"succeeded", "failed", "timed_out", "lost", "rejected", "expired", "canceled"}
    finals |= {"skipped"}
    with Session(engine) as session:
        pairs = [
            (run, session.get(Task, run.task_id))
            for run in session.exec(select(Run)).all()
            if run.state in finals and run.finished_at and START <= run.finished_at < END
        ]
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    reasons: Counter[str] = Counter()
    hours: Counter[int] = Counter()
    for run, task in pairs:
        assert task is not None
        if sites is not None and task.site not in sites:
            continue
        key = {
            "task": f"{task.id} {task.name}",
            "agent": f"{task.site}/{task.agent}" if task.agent else "(none)",
        }.get(group_by) or str(getattr(task, group_by) or "(none)")
        counts[key]["runs"] += 1
        hours[run.finished_at.hour] += 1
        counts[key]["succeeded"] += run.state == "succeeded"
        counts[key]["failed"] += run.state in reports.FAILED
        if run.state in reports.FAILED:
            reasons[(run.reason or run.state)[:200]] += 1
        if run.started_at:
            durations[key].append((run.finished_at - run.started_at).total_seconds())
    groups = [
        (
            key,
            c["runs"],
            c["succeeded"],
            c["failed"],
            reports.percentile(durations[key], 0.5),
            reports.percentile(durations[key], 0.95),
        )
        for key, c in sorted(counts.items())
    ]
    return {"groups": groups, "reasons": dict(reasons), "hours": hours}


def test_the_summary_counts_as_python_did_for_every_grouping(engine: Engine) -> None:
    _runs(engine)
    for group_by in reports.GROUPINGS:
        for sites in (None, ["plant-y"]):
            with Session(engine) as session:
                report = reports.summary(session, START, END, group_by, sites_in=sites)
            expected = _counted_in_python(engine, group_by, sites)
            got = [(g.key, g.runs, g.succeeded, g.failed, g.p50_s, g.p95_s) for g in report.groups]
            assert got == expected["groups"], (group_by, sites)
            assert dict(report.top_failure_reasons) == expected["reasons"]
            hours = expected["hours"]  # the five busiest (which of equals: either order)
            assert [n for _, n in report.busiest_hours] == [n for _, n in hours.most_common(5)]
            assert all(hours[hour] == n for hour, n in report.busiest_hours)


def test_an_empty_period_gives_no_groups(engine: Engine) -> None:
    with Session(engine) as session:
        report = reports.summary(session, START, END, "site")
    assert (report.groups, report.busiest_hours, report.top_failure_reasons) == ([], [], [])
    assert reports.summary_csv(report).startswith("site,runs,succeeded")


@contextmanager
def _watched(engine: Engine) -> Iterator[dict[str, int]]:
    """How many statements ran and how many runs were loaded as ORM objects meanwhile."""
    seen = {"statements": 0, "runs_loaded": 0}

    def statement(*_: Any) -> None:
        seen["statements"] += 1

    def loaded(*_: Any) -> None:
        seen["runs_loaded"] += 1

    event.listen(engine, "before_cursor_execute", statement)
    event.listen(Run, "load", loaded)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(Run, "load", loaded)


def test_the_summary_loads_no_runs_and_asks_a_fixed_number_of_queries(engine: Engine) -> None:
    _runs(engine)
    for group_by in ("op", "task"):
        with Session(engine) as session, _watched(engine) as seen:
            report = reports.summary(session, START, END, group_by)
        assert report.groups
        assert seen["runs_loaded"] == 0  # counted by the database, not in Python
        assert seen["statements"] <= 4  # counts, percentiles, hours, reasons


def test_percentiles_rank_durations_below_a_millisecond_apart(engine: Engine) -> None:
    """Quick runs differ by microseconds: ranked by a millisecond-precise difference
    (SQLite's julianday), the report showed a p95 below its p50."""
    micros = [1559, 1478, 1401, 1999, 1001, 1502, 1498, 1777, 1203, 1650]
    with Session(engine) as session:
        task = Task(name="quick", op="modbus.read", site="plant-q", agent="skid-q")
        session.add(task)
        session.flush()
        for i, us in enumerate(micros):
            finished = END - timedelta(minutes=i + 1, microseconds=137 * i)
            started = finished - timedelta(microseconds=us)
            session.add(
                Run(
                    task_id=task.id or 0,
                    state="succeeded",
                    started_at=started,
                    finished_at=finished,
                )
            )
        session.commit()
    with Session(engine) as session:
        (group,) = reports.summary(session, START, END, "op").groups
    seconds = [us / 1e6 for us in micros]
    assert (group.p50_s, group.p95_s) == (
        reports.percentile(seconds, 0.5),
        reports.percentile(seconds, 0.95),
    )
    assert group.p50_s is not None and group.p95_s is not None and group.p50_s <= group.p95_s
