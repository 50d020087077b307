"""Schedule arithmetic: a task's schedule as an APScheduler trigger, and its slots.

Slots are computed, never remembered: the same schedule and anchor always give the
same slot times, so the (task, slot) key that makes a fire happen once survives
restarts. An interval counts from its anchor (when the schedule was set or resumed);
a one-off `at` without a zone is read in the schedule's time zone.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tme.crontab import crontab_trigger

TICK = timedelta(microseconds=1)
# A fire comes this late with nothing wrong (APScheduler waking, a fire thread, the
# database), so a slot this late is on time whatever the misfire grace: a grace of 0,
# "never start late", must not mean "never start".
ON_TIME_S = 1.0


def build_trigger(schedule: dict[str, Any], anchor: datetime) -> BaseTrigger:
    """The trigger of a stored schedule ({"cron"|"every_s"|"at", "timezone"})."""
    zone = ZoneInfo(str(schedule.get("timezone") or "UTC"))
    if schedule.get("cron"):
        return crontab_trigger(str(schedule["cron"]), zone)
    if schedule.get("every_s"):
        every = float(schedule["every_s"])
        return IntervalTrigger(
            seconds=every, start_date=anchor + timedelta(seconds=every), timezone=zone
        )
    return DateTrigger(run_date=one_off_time(schedule["at"], zone), timezone=zone)


def one_off_time(value: Any, zone: ZoneInfo) -> datetime:
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return when.replace(tzinfo=zone) if when.tzinfo is None else when


def owed_after(schedule: dict[str, Any], anchor: datetime, grace_s: float) -> datetime:
    """Slots after this time are owed by a schedule set (or resumed) at `anchor`.

    Those after the anchor; and a one-off `at` whose time had come at most `grace_s`
    before it was set ("at" now, a client clock a little ahead) is still owed, so it
    fires once instead of never. One further in the past stays not owed, as a resumed
    schedule owes nothing for its pause.
    """
    if schedule.get("at") and not schedule.get("cron") and not schedule.get("every_s"):
        zone = ZoneInfo(str(schedule.get("timezone") or "UTC"))
        at = one_off_time(schedule["at"], zone).astimezone(UTC)
        if (anchor - at).total_seconds() <= grace_s:
            return min(anchor, at - TICK)
    return anchor


def _walk(trigger: BaseTrigger, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after `after`, in UTC, oldest first.

    Each step asks for the first fire time after the previous one (compared in UTC,
    so the repeated autumn hour cannot loop). A cron at set hours fires each wall-clock
    time once, as cron does: in the repeated autumn hour the clock reads times already
    passed (02:00 and 02:30 again for "0,30 2 * * *"), and those are not fired again.
    A cron on every hour, like an interval, follows elapsed time: it fires in both
    02:00 hours, as it fires in both 02:30s when it runs every half hour.
    """
    last = after.astimezone(UTC)
    last_wall: datetime | None = None
    by_wall_clock = isinstance(trigger, CronTrigger) and not _every_hour(trigger)
    if isinstance(trigger, CronTrigger) and by_wall_clock:
        # A walk starts where the last one ended (at the slot handled last): its wall
        # time counts as seen, or the repeated 02:30 would fire again on the next walk.
        last_wall = after.astimezone(trigger.timezone).replace(tzinfo=None)
    while True:
        try:
            when = trigger.get_next_fire_time(None, last + TICK)
        except OverflowError:  # past the last date Python holds: no more fire times
            return
        if when is None or when.astimezone(UTC) <= last:
            return
        last = when.astimezone(UTC)
        wall = when.replace(tzinfo=None)
        if by_wall_clock and last_wall is not None and wall <= last_wall:
            continue  # the clock went back: this wall time has had its fire
        last_wall = wall
        yield last


def _every_hour(trigger: CronTrigger) -> bool:
    return any(f.name == "hour" and str(f) == "*" for f in trigger.fields)


def slots_between(
    trigger: BaseTrigger, after: datetime, until: datetime, limit: int = 1_000_000
) -> Iterator[datetime]:
    """Fire times t with after < t <= until, in UTC, oldest first (at most `limit`)."""
    for count, when in enumerate(_walk(trigger, after)):
        if when > until or count >= limit:
            return
        yield when


def next_fire_times(trigger: BaseTrigger, after: datetime, count: int = 3) -> list[datetime]:
    """The next `count` fire times after `after` (fewer for a one-off)."""
    return list(islice(_walk(trigger, after), count))
