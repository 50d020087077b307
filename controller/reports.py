"""Reports over a period: success rate, duration percentiles, busiest hours, failure reasons.

Only finished runs count (a run still going has no outcome or duration yet); the success
rate counts only those that succeeded or failed.
Durations are from start (running) to finish; a run that never started has none.

Everything is counted by the database (GROUP BY, a window for the percentiles), so a
report over a million runs reads a few rows per group, never the runs themselves.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, String, and_, case, cast, extract, func, or_, select
from sqlmodel import Session, col

from tme.controller.store.models import Run, Task
from tme.states import RunState

GROUPINGS = ("op", "agent", "site", "task")
FAILED = frozenset({"failed", "timed_out", "lost", "rejected", "expired"})
PERCENTILES = {"p50_s": 50, "p95_s": 95}  # in hundredths: ranks stay integer arithmetic
REASON_CHARS = 200  # a failure reason is counted by its start; long ones differ in details
TOP_HOURS, TOP_REASONS = 5, 10


@dataclass(frozen=True)
class GroupRow:
    key: str
    runs: int
    succeeded: int
    failed: int
    success_rate: float | None
    p50_s: float | None
    p95_s: float | None


@dataclass(frozen=True)
class Summary:
    start: datetime
    end: datetime
    group_by: str
    groups: list[GroupRow]
    busiest_hours: list[tuple[int, int]]
    top_failure_reasons: list[tuple[str, int]]


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))
    return round(ordered[min(rank, len(ordered)) - 1], 3)


def _none_if_blank(value: Any, shown: Any) -> Any:
    return case((func.coalesce(value, "") == "", "(none)"), else_=shown)


def _key(group_by: str) -> Any:
    """The group of a run's task, as SQL: "(none)" for a blank op, agent or site."""
    if group_by == "task":
        return cast(col(Task.id), String) + " " + col(Task.name)
    if group_by == "agent":
        return _none_if_blank(Task.agent, func.coalesce(Task.site, "None") + "/" + Task.agent)
    column = getattr(Task, group_by)
    return _none_if_blank(column, column)


def _in_order(group_by: str, key: str) -> tuple[int, str]:
    """Groups by task in task id order (1, 2, 10: the key "10 name" sorts as text
    before "2 name"); the others by their text."""
    if group_by == "task":
        number, _, _name = key.partition(" ")
        if number.isdigit():
            return int(number), key
    return 0, key


def _seconds(session: Session, start: Any, end: Any) -> Any:
    """A run's duration as SQL, to order by (the value shown is computed in Python):
    exact to the microsecond, as quick runs differ by less than a millisecond."""
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return _sqlite_micros(end) - _sqlite_micros(start)


def _sqlite_micros(stamp: Any) -> Any:
    """Microseconds since 1970 of a stored 'YYYY-MM-DD HH:MM:SS.ffffff', in integers:
    SQLite's date functions (julianday too) read only milliseconds of the fraction."""
    whole = cast(func.strftime("%s", func.substr(stamp, 1, 19)), Integer)
    return whole * 1_000_000 + cast(func.substr(stamp, 21, 6), Integer)


def _finished_runs(
    group_by: str, start: datetime, end: datetime, sites_in: Sequence[str] | None
) -> Any:
    """The period's finished runs with their group key, as a subquery every count reads
    (grouping by its column, not by a repeated expression, which PostgreSQL refuses)."""
    query = (
        select(
            _key(group_by).label("key"),
            col(Run.id).label("id"),
            col(Run.state).label("state"),
            col(Run.reason).label("reason"),
            col(Run.started_at).label("started_at"),
            col(Run.finished_at).label("finished_at"),
        )
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(col(Run.finished_at) >= start, col(Run.finished_at) < end)
        .where(col(Run.state).in_([s.value for s in RunState if s.is_final]))
    )
    if sites_in is not None:
        query = query.where(col(Task.site).in_(sites_in))
    return query.subquery("finished")


def _counts(session: Session, runs: Any) -> dict[str, Counter[str]]:
    query = select(runs.c.key, runs.c.state, func.count()).group_by(runs.c.key, runs.c.state)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for key, state, n in session.execute(query):
        counts[key]["runs"] += n
        if state == RunState.succeeded:
            counts[key]["succeeded"] += n
        elif state in FAILED:
            counts[key]["failed"] += n
    return counts


def _percentiles(session: Session, runs: Any) -> dict[str, dict[str, float]]:
    """Group -> {"p50_s": ..., "p95_s": ...}: the database orders each group's durations
    and returns only the runs at the nearest ranks, ceil(q * n)."""
    started = (
        select(runs.c.key, runs.c.id, runs.c.started_at, runs.c.finished_at)
        .where(runs.c.started_at.is_not(None))
        .subquery("started")
    )
    ranked = select(
        started.c.key,
        started.c.started_at,
        started.c.finished_at,
        func.row_number()
        .over(
            partition_by=started.c.key,
            order_by=(_seconds(session, started.c.started_at, started.c.finished_at), started.c.id),
        )
        .label("rank"),
        func.count().over(partition_by=started.c.key).label("n"),
    ).subquery("ranked")

    def at(hundredths: int) -> Any:  # rank == ceil(n * q), without division
        return and_(
            ranked.c.n * hundredths <= ranked.c.rank * 100,
            ranked.c.n * hundredths > (ranked.c.rank - 1) * 100,
        )

    query = select(
        ranked.c.key, ranked.c.started_at, ranked.c.finished_at, ranked.c.rank, ranked.c.n
    ).where(or_(*(at(h) for h in PERCENTILES.values())))
    found: dict[str, dict[str, float]] = defaultdict(dict)
    for key, began, ended, rank, n in session.execute(query):
        seconds = round((ended - began).total_seconds(), 3)
        for name, hundredths in PERCENTILES.items():
            if (rank - 1) * 100 < n * hundredths <= rank * 100:
                found[key][name] = seconds
    return found


def _busiest_hours(session: Session, runs: Any) -> list[tuple[int, int]]:
    hours = select(extract("hour", runs.c.finished_at).label("hour")).subquery("hours")
    n = func.count().label("n")
    query = select(hours.c.hour, n).group_by(hours.c.hour).order_by(n.desc(), hours.c.hour)
    return [(int(hour), count) for hour, count in session.execute(query.limit(TOP_HOURS))]


def _top_failure_reasons(session: Session, runs: Any) -> list[tuple[str, int]]:
    said = case((runs.c.reason == "", runs.c.state), else_=runs.c.reason)
    reasons = (
        select(func.substr(said, 1, REASON_CHARS).label("reason"))
        .where(runs.c.state.in_(sorted(FAILED)))
        .subquery("reasons")
    )
    n = func.count().label("n")
    query = select(reasons.c.reason, n).group_by(reasons.c.reason)
    query = query.order_by(n.desc(), reasons.c.reason).limit(TOP_REASONS)
    return [(reason, count) for reason, count in session.execute(query)]


def summary(
    session: Session,
    start: datetime,
    end: datetime,
    group_by: str = "op",
    sites_in: Sequence[str] | None = None,
) -> Summary:
    """`sites_in` limits the report to tasks of those sites (a caller's grant); None: all."""
    runs = _finished_runs(group_by, start, end, sites_in)
    counts = _counts(session, runs)
    durations = _percentiles(session, runs) if counts else {}
    groups = [
        GroupRow(
            key=key,
            runs=c["runs"],
            succeeded=c["succeeded"],
            failed=c["failed"],
            success_rate=_success_rate(c["succeeded"], c["failed"]),
            p50_s=durations.get(key, {}).get("p50_s"),
            p95_s=durations.get(key, {}).get("p95_s"),
        )
        for key, c in sorted(counts.items(), key=lambda item: _in_order(group_by, item[0]))
    ]
    hours = _busiest_hours(session, runs) if counts else []
    reasons = _top_failure_reasons(session, runs) if counts else []
    return Summary(start, end, group_by, groups, hours, reasons)


def _success_rate(succeeded: int, failed: int) -> float | None:
    """Succeeded among the runs that succeeded or failed. A skipped or canceled run never
    ran to an outcome (a branch not taken, an overlapping slot, an operator's stop): counted
    as a failure, it would lower the rate of a task that never failed. None: no outcome."""
    decided = succeeded + failed
    return round(succeeded / decided, 4) if decided else None


def summary_csv(report: Summary) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [report.group_by, *list(asdict(report.groups[0]).keys())[1:]]
        if report.groups
        else [report.group_by, "runs", "succeeded", "failed", "success_rate", "p50_s", "p95_s"]
    )
    for row in report.groups:
        writer.writerow(list(asdict(row).values()))
    return out.getvalue()
