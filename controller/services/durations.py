"""How long a run took, against its task's usual: the median of how long the task's
last succeeded runs took (from their `running` hop to their final one, the time on the
machine). A run that took much longer than usual is slow: the run's page and
`tme run show` say so, and a notification rule that names the event `slow` hears of it
("the valve close took 12 s, 4x its usual 3 s"), so a machine wearing out is seen
before it fails.

What counts as slow is `notifications.slow` in the settings: longer than `factor`
times the usual and by at least `min_excess_s`, with at least `min_runs` runs behind
the usual (a task's first runs set it; a run of a new task is never slow).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from tme.controller.store.models import Run
from tme.durations import duration_line, took_s
from tme.settings_models import SlowRunSettings
from tme.states import RunState


@dataclass(frozen=True)
class Usual:
    """How long the task's last succeeded runs took: their median, and how many."""

    median_s: float
    runs: int


def is_slow(rule: SlowRunSettings, took_s: float, usual: Usual | None) -> bool:
    """Whether a run that took `took_s` against `usual` is slow by `rule`
    (`notifications.slow`)."""
    if usual is None or usual.runs < rule.min_runs:
        return False
    excess = took_s - usual.median_s
    return took_s > rule.factor * usual.median_s and excess >= rule.min_excess_s


def usual_of(session: Session, task_id: int, before: datetime, history: int) -> Usual | None:
    """The usual of the task's runs created before `before`: the median time of its last
    `history` succeeded runs (None: none has succeeded yet). Read newest first by the
    runs' (task_id, created_at) index."""
    query = (
        select(Run.started_at, Run.finished_at)
        .where(Run.task_id == task_id, Run.state == RunState.succeeded.value)
        .where(col(Run.created_at) < before, col(Run.started_at).is_not(None))
        .order_by(col(Run.created_at).desc())
        .limit(history)
    )
    times = [t for t in (took_s(s, f) for s, f in session.exec(query)) if t is not None]
    if not times:
        return None
    return Usual(statistics.median(times), len(times))


@dataclass(frozen=True)
class Duration:
    """A run's time against its task's usual, and whether that makes it slow."""

    took_s: float | None
    usual: Usual | None
    slow: bool


def duration_of(session: Session, run: Run, rule: SlowRunSettings) -> Duration:
    """How long `run` took against its task's usual; only a succeeded run is slow (a
    failure is told as the failure it is)."""
    took = took_s(run.started_at, run.finished_at)
    if took is None:
        return Duration(None, None, False)
    usual = usual_of(session, run.task_id, run.created_at, rule.history)
    slow = run.state == RunState.succeeded.value and is_slow(rule, took, usual)
    return Duration(took, usual, slow)


def describe_duration(duration: Duration) -> str:
    """One line: `took 12.0 s; usual 3.0 s (median of the last 20 succeeded runs), 4.0x: slow`."""
    usual = duration.usual
    median, runs = (usual.median_s, usual.runs) if usual else (None, 0)
    return duration_line(duration.took_s, median, runs, duration.slow)
