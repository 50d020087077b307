"""Crontab expressions as APScheduler 3 triggers, with crontab's weekday numbers.

In a crontab, day of week 0 (and 7) is Sunday and 1-5 is Monday to Friday.
APScheduler 3 reads the same numbers with 0 as Monday (its issue 286, kept for
backward compatibility), so `CronTrigger.from_crontab("0 6 * * 1-5")` fires Tuesday
to Saturday. Here the day-of-week field is rewritten as weekday names, which both
read alike, before APScheduler sees it.

APScheduler 3.11 also moves to the next day (or hour) by adding the wall-clock
difference as elapsed time: from a time before the spring DST change, "the next
midnight" lands an hour past it, and the whole day is skipped ("0 0 * * *" in
Europe/Berlin never fires on the Monday after the change). `CrontabTrigger` puts
such a step back on the wall-clock time it meant.

APScheduler also reads a month name only up to its end: `jan-dec/2` as `jan-dec`
(every month), `jan-feb-mar` as `jan-feb`. Month names are turned into their numbers
first, which it reads whole (`1-12/2`), or refuses.

And when both day fields are restricted, cron fires on a day matching either, where
APScheduler requires both: `EitherDayTrigger` keeps cron's rule.

The nicknames of Vixie cron and its heirs (@hourly, @daily, ...) stand for their five
fields; APScheduler reads none of them. @reboot is no time of day: it is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from apscheduler.triggers.cron import CronTrigger

MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # crontab order: 0 is Sunday
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CrontabTrigger(CronTrigger):
    """A CronTrigger whose steps to the next day or hour keep to the wall clock when the
    UTC offset grows on the way (spring forward)."""

    def _increment_field_value(self, dateval: datetime, fieldnum: int) -> tuple[datetime, int]:
        stepped, fieldnum = super()._increment_field_value(dateval, fieldnum)
        gained = stepped.utcoffset() - dateval.utcoffset()
        if gained.total_seconds() <= 0:
            # No change, or autumn: the elapsed step walks into the repeated hour, where
            # a cron on every hour fires again (as intended).
            return stepped, fieldnum
        meant = (stepped.replace(tzinfo=None) - gained).replace(tzinfo=self.timezone)
        meant = meant.astimezone(UTC).astimezone(self.timezone)  # a time in the gap moves on
        return (meant if meant > dateval else stepped), fieldnum

    def in_wall_clock(self) -> CrontabTrigger:
        """The same fields read in UTC: the times of the wall clock, one each, none
        skipped and none repeated (its zone's DST changes left to the caller)."""
        return CrontabTrigger(**{f.name: str(f) for f in self.fields}, timezone=UTC)


class EitherDayTrigger(CrontabTrigger):
    """Cron's rule when both the day of month and the day of week are restricted: a day
    matching either fires (`0 6 1 * mon`: the 1st of each month and every Monday).
    APScheduler fires only on days matching both (the Mondays that are a 1st).

    The fields it carries are those of the weekday half (the walk reads the hour field
    and the zone); the day-of-month half is built again from the expression, which is
    kept through pickling (jobs are stored pickled)."""

    def __init__(self, expr: str, timezone: Any) -> None:
        self.expr = expr
        by_date, by_weekday = _either_day_halves(expr, timezone)
        super().__init__(**by_weekday, timezone=timezone)
        self._by_date = CrontabTrigger(**by_date, timezone=timezone)

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        times = [
            when
            for when in (
                self._by_date.get_next_fire_time(previous_fire_time, now),
                super().get_next_fire_time(previous_fire_time, now),
            )
            if when is not None
        ]
        return min(times, default=None)

    def in_wall_clock(self) -> CrontabTrigger:
        return EitherDayTrigger(self.expr, UTC)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "crontab": self.expr}

    def __str__(self) -> str:
        return f"cron[{self.expr}]"

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.expr = state["crontab"]
        by_date, _by_weekday = _either_day_halves(self.expr, self.timezone)
        self._by_date = CrontabTrigger(**by_date, timezone=self.timezone)


def crontab_trigger(expr: str, timezone: Any) -> CrontabTrigger:
    """The trigger of a five-field crontab expression (ValueError when invalid)."""
    minute, hour, day, month, day_of_week = _fields(expr)
    if _restricted(day) and _restricted(day_of_week):
        return EitherDayTrigger(expr, timezone)
    return CrontabTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month_numbers(month),
        day_of_week=weekday_names(day_of_week),
        timezone=timezone,
    )


def _fields(expr: str) -> list[str]:
    text = expr.strip()
    if text.startswith("@"):
        return _nickname(text).split()
    values = text.split()
    if len(values) != 5:
        raise ValueError(
            f"wrong number of fields; got {len(values)}, expected 5"
            " (minute hour day-of-month month day-of-week)"
        )
    return values


def _nickname(text: str) -> str:
    fields = NICKNAMES.get(text.lower())
    if fields is not None:
        return fields
    known = ", ".join(NICKNAMES)
    if text.lower() == "@reboot":
        raise ValueError(f"@reboot is not a time: give five fields or one of {known}")
    raise ValueError(f"unknown nickname {text!r}: give five fields or one of {known}")


def _restricted(field: str) -> bool:
    """Cron's test: a day field not starting with `*` (`*/2` counts as unrestricted)."""
    return not field.startswith("*")


def _either_day_halves(expr: str, timezone: Any) -> tuple[dict[str, str], dict[str, str]]:
    """The fields of the two triggers of an either-day expression: one for its days of
    the month (any weekday), one for its days of the week (any day of the month)."""
    minute, hour, day, month, day_of_week = _fields(expr)
    common = {"minute": minute, "hour": hour, "month": month_numbers(month)}
    return (
        {**common, "day": day, "day_of_week": "*"},
        {**common, "day": "*", "day_of_week": weekday_names(day_of_week)},
    )


def month_numbers(field: str) -> str:
    """A crontab month field with each month name as its number (`jan-dec/2`: `1-12/2`),
    for APScheduler to read whole; a field mixing names and numbers is refused."""
    if not re.search(r"[a-z]", field, re.IGNORECASE):
        return field
    if re.search(r"\d", re.sub(r"/\d+", "", field)):
        raise ValueError(f"invalid month field {field!r}: use names or numbers, not both")

    def number(match: re.Match[str]) -> str:
        name = match.group(0).lower()
        if name not in MONTHS:
            raise ValueError(f"invalid month name {match.group(0)!r}")
        return str(MONTHS.index(name) + 1)

    return re.sub(r"[a-z]+", number, field, flags=re.IGNORECASE)


def weekday_names(field: str) -> str:
    """A crontab day-of-week field as APScheduler's: "*" or a list of weekday names."""
    days: set[int] = set()
    for item in field.lower().split(","):
        days |= _days_of(item)
    if days == set(range(7)):
        return "*"
    return ",".join(NAMES[day] for day in sorted(days))


def _days_of(item: str) -> set[int]:
    part, slash, step_text = item.partition("/")
    step = _number(step_text, "step") if slash else 1
    if step < 1:
        raise ValueError(f"invalid day-of-week step in {item!r}")
    if part == "*":
        first, last = 0, 6
    elif "-" in part:
        start, end = part.split("-", 1)
        first, last = _day(start), _day(end)
        if last == 0 < first:
            last = 7  # "sat-sun", "5-0": up to Sunday at the end of the week
    else:
        first = _day(part)
        last = 7 if slash else first  # "1/2": from Monday on, every second day
    if first > last:
        raise ValueError(f"invalid day-of-week range {part!r}: {first} is after {last}")
    return {day % 7 for day in range(first, last + 1, step)}


def _day(text: str) -> int:
    """0-7 (7 is Sunday again, so "5-7" is Friday to Sunday) or a weekday name."""
    if text in NAMES:
        return NAMES.index(text)
    day = _number(text, "day of week")
    if day > 7:
        raise ValueError(f"invalid day of week {text!r}: use 0-7 (0 and 7 are Sunday)")
    return day


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise ValueError(f"invalid {what} {text!r}")
    return int(text)
