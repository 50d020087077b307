"""Schedule arithmetic: a task's schedule as an APScheduler trigger, and its slots.

Slots are computed, never remembered: the same schedule and anchor always give the
same slot times, so the (task, slot) key that makes a fire happen once survives
restarts. An interval counts from its anchor (when the schedule was set or resumed);
a one-off `at` without a zone is read in the schedule's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

TICK = timedelta(microseconds=1)


def build_trigger(schedule: dict[str, Any], anchor: datetime) -> BaseTrigger:
    """The trigger of a stored schedule ({"cron"|"every_s"|"at", "timezone"})."""
    zone = ZoneInfo(str(schedule.get("timezone") or "UTC"))
    if schedule.get("cron"):
        return CronTrigger.from_crontab(str(schedule["cron"]), timezone=zone)
    if schedule.get("every_s"):
        every = float(schedule["every_s"])
        return IntervalTrigger(
            seconds=every, start_date=anchor + timedelta(seconds=every), timezone=zone
        )
    return DateTrigger(run_date=one_off_time(schedule["at"], zone), timezone=zone)


def one_off_time(value: Any, zone: ZoneInfo) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


def slots_between(
    trigger: BaseTrigger, after: datetime, until: datetime, limit: int = 100_000
) -> Iterator[datetime]:
    """Fire times t with after < t <= until, in UTC, oldest first (at most `limit`)."""
    when = trigger.get_next_fire_time(None, after + TICK)
    count = 0
    while when is not None and when <= until and count < limit:
        if when > after:
            yield when.astimezone(UTC)
            count += 1
        when = trigger.get_next_fire_time(when, when + TICK)


def next_fire_times(trigger: BaseTrigger, after: datetime, count: int = 3) -> list[datetime]:
    """The next `count` fire times after `after` (fewer for a one-off)."""
    found: list[datetime] = []
    when = trigger.get_next_fire_time(None, after + TICK)
    while when is not None and len(found) < count:
        if when > after:
            found.append(when.astimezone(UTC))
        when = trigger.get_next_fire_time(when, when + TICK)
    return found
