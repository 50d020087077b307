"""Reports over a period: success rate, duration percentiles, busiest hours, failure reasons.

Only finished runs count (a run still going has no outcome or duration yet).
Durations are from start (running) to finish; a run that never started has none.
"""

from __future__ import annotations

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from tme.controller.store.models import Run, Task
from tme.states import RunState

GROUPINGS = ("op", "agent", "site", "task")
FAILED = frozenset({"failed", "timed_out", "lost", "rejected", "expired"})


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


def _key(task: Task, group_by: str) -> str:
    if group_by == "task":
        return f"{task.id} {task.name}"
    if group_by == "agent":
        return f"{task.site}/{task.agent}" if task.agent else "(none)"
    value = getattr(task, group_by)
    return str(value) if value else "(none)"


def summary(
    session: Session,
    start: datetime,
    end: datetime,
    group_by: str = "op",
    sites_in: Sequence[str] | None = None,
) -> Summary:
    """`sites_in` limits the report to tasks of those sites (a caller's grant); None: all."""
    finals = [s.value for s in RunState if s.is_final]
    query = (
        select(Run, Task)
        .join(Task, col(Task.id) == col(Run.task_id))
        .where(col(Run.finished_at) >= start, col(Run.finished_at) < end)
        .where(col(Run.state).in_(finals))
    )
    if sites_in is not None:
        query = query.where(col(Task.site).in_(sites_in))
    rows = session.exec(query).all()
    durations: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    hours: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    for run, task in rows:
        key = _key(task, group_by)
        counts[key]["runs"] += 1
        if run.state == RunState.succeeded:
            counts[key]["succeeded"] += 1
        elif run.state in FAILED:
            counts[key]["failed"] += 1
            reasons[(run.reason or run.state)[:200]] += 1
        if run.started_at and run.finished_at:
            durations[key].append((run.finished_at - run.started_at).total_seconds())
        if run.finished_at:
            hours[run.finished_at.hour] += 1
    groups = [
        GroupRow(
            key=key,
            runs=c["runs"],
            succeeded=c["succeeded"],
            failed=c["failed"],
            success_rate=round(c["succeeded"] / c["runs"], 4) if c["runs"] else None,
            p50_s=percentile(durations[key], 0.50),
            p95_s=percentile(durations[key], 0.95),
        )
        for key, c in sorted(counts.items())
    ]
    return Summary(start, end, group_by, groups, hours.most_common(5), reasons.most_common(10))


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
