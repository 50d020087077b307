"""How a run's duration is said to people, against its task's usual (the controller's
services/durations.py works them out; the API answers the figures, the dashboard, the
CLI and the emails say them with these)."""

from __future__ import annotations

from datetime import datetime


def duration_line(took_s: float | None, usual_s: float | None, usual_runs: int, slow: bool) -> str:
    """`took 12.0 s; usual 3.0 s (median of the last 20 succeeded runs), 4.0x: slow`;
    "" for a run that never started."""
    if took_s is None:
        return ""
    text = f"took {seconds(took_s)}"
    if usual_s is None or usual_runs <= 0:
        return text + "; no succeeded run before it to compare with"
    plural = "s" if usual_runs != 1 else ""
    text += f"; usual {seconds(usual_s)} (median of the last {usual_runs} succeeded run{plural})"
    if usual_s > 0:
        text += f", {took_s / usual_s:.1f}x"
    return text + (": slow" if slow else "")


def seconds(value: float) -> str:
    """A duration for people: under 1 ms, 3 ms, 0.25 s, 12.0 s, 3.5 min."""
    if value < 0.0005:
        return "under 1 ms"
    if value < 0.1:
        return f"{value * 1000:.0f} ms"
    if value < 1:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


def took_s(started_at: datetime | None, finished_at: datetime | None) -> float | None:
    """Seconds from a run's start on the machine to its end (None: it never started)."""
    if started_at is None or finished_at is None:
        return None
    return max(0.0, (finished_at - started_at).total_seconds())
