"""Schedule arithmetic: a task's schedule as an APScheduler trigger, and its slots.

Slots are computed, never remembered: the same schedule and anchor always give the
same slot times, so the (task, slot) key that makes a fire happen once survives
restarts. An interval counts from its anchor (when the schedule was set or resumed);
a one-off `at` without a zone is read in the schedule's time zone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from tme.crontab import CrontabTrigger, crontab_trigger

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

    A cron at set hours fires at the times of the wall clock (`_walk_wall_clock`). A
    cron on every hour, like an interval, follows elapsed time: it fires in both 02:00
    hours of the autumn change, as it fires in both 02:30s when it runs every half hour.
    Each step asks for the first fire time after the previous one, in UTC.
    """
    if isinstance(trigger, CrontabTrigger) and not _every_hour(trigger):
        yield from _walk_wall_clock(trigger, after)
        return
    last = after.astimezone(UTC)
    while True:
        try:
            when = trigger.get_next_fire_time(None, last + TICK)
        except OverflowError:  # past the last date Python holds: no more fire times
            return
        if when is None or when.astimezone(UTC) <= last:
            return
        last = when.astimezone(UTC)
        yield last


# The largest step forward of a clock (a DST change: one hour, half an hour on Lord Howe,
# two in Antarctica's Troll): a wall time in the skipped span fires this much later at
# most, so a walk looks this far back and holds each time until it has read this far on.
CLOCK_JUMP = timedelta(hours=3)


def _walk_wall_clock(trigger: CrontabTrigger, after: datetime) -> Iterator[datetime]:
    """A cron's times as its zone's wall clock reads them, in UTC, oldest first.

    Each wall time fires once: one the spring change skips fires as much later as the
    clock jumped (02:15 at 03:15, as 02:00 at 03:00: a time that also has a fire of its
    own fires once), one the autumn change repeats fires at its first occurrence. The
    times are those of the fields read in UTC, where no hour is skipped or repeated, each
    then placed in the zone (fold 0, PEP 495). A skipped time placed so can come after a
    time read later (02:45 at 03:45, then 03:00), so times are held for CLOCK_JUMP of
    reading (only near a spring change), and handed out in order.
    """
    zone, wall = trigger.timezone, trigger.in_wall_clock()
    last = after.astimezone(UTC)
    cursor = after.astimezone(zone).replace(tzinfo=UTC) - _jump_near(zone, last)
    held: list[datetime] = []
    while True:
        try:
            read = wall.get_next_fire_time(None, cursor + TICK)
        except OverflowError:  # past the last date Python holds: no more fire times
            read = None
        if read is None:
            yield from _in_order(held, last, None)
            return
        cursor = read
        when = read.replace(tzinfo=zone).astimezone(UTC)
        if when > last:
            heapq.heappush(held, when)
        for due in _in_order(held, last, when - _jump_near(zone, when)):
            last = due
            yield due


def _jump_near(zone: Any, when: datetime) -> timedelta:
    """How far the clock jumps forward within CLOCK_JUMP of `when` (zero, as a rule): how
    far a walk looks back from there, and holds the times it reads there."""
    before = (when - CLOCK_JUMP).astimezone(zone).utcoffset()
    later = (when + CLOCK_JUMP).astimezone(zone).utcoffset()
    assert before is not None and later is not None  # an aware time in a zone
    return max(later - before, timedelta(0))


def _in_order(held: list[datetime], last: datetime, until: datetime | None) -> Iterator[datetime]:
    """Take the held times up to `until` (all: None) off the heap, oldest first, each
    once and after `last`."""
    while held and (until is None or held[0] <= until):
        due = heapq.heappop(held)
        if due > last:
            last = due
            yield due


class SlotTrigger(BaseTrigger):
    """A cron's trigger as the scheduler's job holds it: the job wakes at the slots a walk
    finds (`_walk`), where APScheduler alone would wake at the next time its fields match
    after the last fire, past the wall times the spring change skipped (fired at 03:15,
    03:30 and 03:45 after the 03:00 of 02:00: it woke only at 02:00 the next day)."""

    def __init__(self, inner: CrontabTrigger) -> None:
        self.inner = inner

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # After the previous fire when given (APScheduler asks again from each time it
        # returned until one is past `now`), and not before `now`.
        after = now - TICK if previous_fire_time is None else max(previous_fire_time, now - TICK)
        return next(_walk(self.inner, after), None)

    def __str__(self) -> str:
        return str(self.inner)


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
