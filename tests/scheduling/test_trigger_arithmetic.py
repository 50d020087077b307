"""Schedule arithmetic with fixed times: cron across DST, interval, one-off in another zone."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.base import BaseTrigger
from hypothesis import given
from hypothesis import strategies as st

from tme.controller.sched_triggers import (
    SlotTrigger,
    build_trigger,
    next_fire_times,
    slots_between,
)
from tme.crontab import CrontabTrigger


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_cron_keeps_local_time_across_the_spring_dst_change() -> None:
    # 06:00 Berlin is 05:00 UTC in winter and 04:00 UTC from 30 March 2025 (CEST).
    trigger = build_trigger({"cron": "0 6 * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = next_fire_times(trigger, utc(2025, 3, 29), 3)
    assert fires == [utc(2025, 3, 29, 5), utc(2025, 3, 30, 4), utc(2025, 3, 31, 4)]


def test_cron_in_the_skipped_hour_fires_once_that_day() -> None:
    trigger = build_trigger({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 3, 29), utc(2025, 4, 1)))
    assert len(fires) == 3  # 29, 30 (02:30 does not exist: fires at 03:30 CEST), 31
    assert fires[1] == utc(2025, 3, 30, 1, 30)


def test_cron_in_the_repeated_autumn_hour_fires_once() -> None:
    trigger = build_trigger({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12)))
    assert len(fires) == 1


def test_interval_counts_from_its_anchor() -> None:
    anchor = utc(2025, 1, 1, 12)
    trigger = build_trigger({"every_s": 30}, anchor)
    slots = list(slots_between(trigger, anchor, anchor + timedelta(seconds=95)))
    assert slots == [anchor + timedelta(seconds=s) for s in (30, 60, 90)]


def test_one_off_in_another_zone() -> None:
    trigger = build_trigger(
        {"at": "2025-07-01T08:00:00", "timezone": "America/New_York"}, utc(2025, 1, 1)
    )
    assert next_fire_times(trigger, utc(2025, 6, 1), 3) == [utc(2025, 7, 1, 12)]
    assert next_fire_times(trigger, utc(2025, 7, 1, 12), 3) == []  # once, and only once


def test_one_off_with_its_own_offset_wins_over_the_zone() -> None:
    trigger = build_trigger(
        {"at": "2025-07-01T08:00:00+09:00", "timezone": "Europe/Berlin"}, utc(2025, 1, 1)
    )
    assert next_fire_times(trigger, utc(2025, 1, 1)) == [utc(2025, 6, 30, 23)]


def test_hourly_interval_fires_in_both_repeated_autumn_hours() -> None:
    # An interval counts elapsed time: 26 Oct 2025 in Berlin has two 02:00s, an hour apart.
    anchor = utc(2025, 10, 25, 22)
    trigger = build_trigger({"every_s": 3600, "timezone": "Europe/Berlin"}, anchor)
    slots = list(slots_between(trigger, anchor, utc(2025, 10, 26, 3)))
    assert slots == [anchor + timedelta(hours=h) for h in range(1, 6)]


def test_hourly_cron_fires_in_both_repeated_autumn_hours() -> None:
    # "0 * * * *" runs every real hour, as "*/30" already did: 02:00 CEST and 02:00 CET.
    trigger = build_trigger({"cron": "0 * * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    slots = list(slots_between(trigger, utc(2025, 10, 25, 22), utc(2025, 10, 26, 3)))
    assert slots == [utc(2025, 10, 25, 22) + timedelta(hours=h) for h in range(1, 6)]


def test_weekday_cron_fires_monday_to_friday() -> None:
    # "set pump 2 to 1200 rpm every weekday at 06:00": crontab 1-5 is Monday to Friday
    # (APScheduler 3 alone reads it as Tuesday to Saturday, 0 being its Monday).
    trigger = build_trigger({"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 3, 23), utc(2025, 3, 30)))  # Sun..Sun
    days = [f.astimezone(ZoneInfo("Europe/Berlin")) for f in fires]
    assert [d.strftime("%a %H:%M") for d in days] == [
        f"{day} 06:00" for day in ("Mon", "Tue", "Wed", "Thu", "Fri")
    ]


@given(st.lists(st.integers(0, 7), min_size=1, max_size=8), st.integers(1, 3))
def test_crontab_weekday_numbers_are_crontabs(days: list[int], step: int) -> None:
    # Any list of crontab weekday numbers (0 and 7 Sunday), or a stepped range of them,
    # fires on exactly those days.
    first, last = min(days), max(days)
    field = ",".join(map(str, days)) if step == 1 else f"{first}-{last}/{step}"
    wanted = {d % 7 for d in days} if step == 1 else {d % 7 for d in range(first, last + 1, step)}
    trigger = build_trigger({"cron": f"0 12 * * {field}"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 1, 5), utc(2025, 1, 26)))  # three weeks
    assert {f.isoweekday() % 7 for f in fires} == wanted
    assert len(fires) == 3 * len(wanted)


def test_weekday_names_and_sunday_as_seven() -> None:
    names = build_trigger({"cron": "0 12 * * mon-fri"}, utc(2025, 1, 1))
    numbers = build_trigger({"cron": "0 12 * * 5-7"}, utc(2025, 1, 1))
    weekend = build_trigger({"cron": "0 12 * * sat-sun"}, utc(2025, 1, 1))
    week = (utc(2025, 1, 5), utc(2025, 1, 12))  # Sunday to Sunday
    assert {f.strftime("%a") for f in slots_between(names, *week)} == {
        "Mon",
        "Tue",
        "Wed",
        "Thu",
        "Fri",
    }
    assert {f.strftime("%a") for f in slots_between(numbers, *week)} == {"Fri", "Sat", "Sun"}
    assert {f.strftime("%a") for f in slots_between(weekend, *week)} == {"Sat", "Sun"}


def _walked_slot_by_slot(trigger: BaseTrigger, after: datetime, until: datetime) -> list[datetime]:
    """The slots as the live scheduler finds them: each fire walks from the last slot."""
    found: list[datetime] = []
    while True:
        step = list(slots_between(trigger, after, until, limit=1))
        if not step:
            return found
        found.append(step[0])
        after = step[0]


DST_DAYS = [
    utc(2025, 3, 29, 12),  # Europe, spring
    utc(2025, 10, 25, 12),  # Europe, autumn
    utc(2025, 3, 8, 12),  # United States, spring
    utc(2025, 11, 1, 12),  # United States, autumn
    utc(2025, 4, 5, 6),  # Australia, autumn
    utc(2025, 10, 4, 6),  # Australia, spring
]


@given(
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]),
    st.sets(st.sampled_from([0, 15, 30, 45]), min_size=1),
    st.sets(st.integers(0, 4), min_size=1),
    st.sampled_from(DST_DAYS),
)
def test_a_fire_after_each_slot_finds_the_slots_of_one_walk(
    zone: str, minutes: set[int], hours: set[int], start: datetime
) -> None:
    # The live scheduler walks from the slot it handled last at every fire; across a
    # DST change that must give the slots of one walk: none twice, none lost.
    cron = f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours)))} * * *"
    trigger = build_trigger({"cron": cron, "timezone": zone}, utc(2025, 1, 1))
    until = start + timedelta(days=2)
    walked = list(slots_between(trigger, start, until))
    assert _walked_slot_by_slot(trigger, start, until) == walked
    local = [w.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for w in walked]
    assert len(set(local)) == len(local)  # no wall-clock time fires twice


def test_midnight_cron_fires_on_the_day_after_the_spring_change() -> None:
    # APScheduler alone steps from 00:00 CET on 30 Mar 2025 to 01:00 CEST on the 31st,
    # past midnight, and skips the whole Monday.
    trigger = build_trigger({"cron": "0 0 * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 3, 29, 12), utc(2025, 4, 1, 12)))
    berlin = [f.astimezone(ZoneInfo("Europe/Berlin")).isoformat() for f in fires]
    assert berlin == [
        "2025-03-30T00:00:00+01:00",
        "2025-03-31T00:00:00+02:00",
        "2025-04-01T00:00:00+02:00",
    ]


@given(
    st.sampled_from(["Europe/Berlin", "America/New_York", "Australia/Sydney", "Europe/London"]),
    st.integers(0, 23),
    st.sampled_from([0, 1, 30, 59]),
    st.sampled_from(DST_DAYS),
)
def test_a_daily_cron_fires_once_every_local_day_across_dst(
    zone: str, hour: int, minute: int, around: datetime
) -> None:
    # In zones whose clocks change away from midnight, a daily time fires on every
    # local day once: on the day its time is skipped, at the same time after the jump.
    local = ZoneInfo(zone)
    trigger = build_trigger({"cron": f"{minute} {hour} * * *", "timezone": zone}, utc(2025, 1, 1))
    start = around - timedelta(days=3)
    fires = list(slots_between(trigger, start, start + timedelta(days=8)))
    days = [f.astimezone(local).date() for f in fires]
    first = (start + timedelta(days=1)).astimezone(local).date()
    wanted = [first + timedelta(days=d) for d in range(6)]
    assert all(days.count(day) == 1 for day in wanted), (days, wanted)


def test_several_times_in_the_repeated_hour_fire_once_each() -> None:
    trigger = build_trigger({"cron": "0,30 2 * * *", "timezone": "Europe/Berlin"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12)))
    berlin = [f.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M%z") for f in fires]
    assert berlin == ["02:00+0200", "02:30+0200"]


@given(
    st.sets(st.integers(1, 28), min_size=1, max_size=4),
    st.sets(st.integers(0, 6), min_size=1, max_size=3),
)
def test_both_day_fields_restricted_fire_on_either(dates: set[int], weekdays: set[int]) -> None:
    # Cron's rule: with both the day of month and the day of week restricted, a day
    # matching either fires ("0 6 1 * mon": every 1st and every Monday). APScheduler
    # alone fired only on days matching both.
    cron = f"0 6 {','.join(map(str, sorted(dates)))} * {','.join(map(str, sorted(weekdays)))}"
    trigger = build_trigger({"cron": cron}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 1, 1), utc(2025, 3, 1)))
    days = {utc(2025, 1, 1).date() + timedelta(days=n) for n in range(59)}  # Jan 1 .. Feb 28
    wanted = {d for d in days if d.day in dates or d.isoweekday() % 7 in weekdays}
    assert {f.date() for f in fires} == wanted
    assert all(f.strftime("%H:%M") == "06:00" for f in fires)
    # jobs are stored pickled: the trigger keeps both halves through it
    again = pickle.loads(pickle.dumps(trigger))
    assert list(slots_between(again, utc(2025, 1, 1), utc(2025, 3, 1))) == fires


def test_a_starred_day_field_keeps_both_conditions() -> None:
    # As in cron, a day field starting with "*" (here "*/2", the odd days) is not a
    # restriction that widens: the fire days match both fields.
    trigger = build_trigger({"cron": "0 6 */2 * mon"}, utc(2025, 1, 1))
    fires = list(slots_between(trigger, utc(2025, 1, 1), utc(2025, 3, 1)))
    assert fires and all(f.isoweekday() == 1 and f.day % 2 == 1 for f in fires)


def test_nicknames_fire_as_their_five_fields() -> None:
    """@hourly ... @yearly fire as the crontab fields they stand for, in the zone."""
    since = utc(2025, 3, 28, 12)
    for nickname, fields in [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
    ]:
        named = build_trigger({"cron": nickname, "timezone": "Europe/Berlin"}, since)
        spelled = build_trigger({"cron": fields, "timezone": "Europe/Berlin"}, since)
        assert next_fire_times(named, since, 3) == next_fire_times(spelled, since, 3), nickname
    daily = build_trigger({"cron": "@daily", "timezone": "Europe/Berlin"}, since)
    assert next_fire_times(daily, since, 2) == [utc(2025, 3, 28, 23), utc(2025, 3, 29, 23)]


def test_month_names_take_a_step_as_month_numbers_do() -> None:
    """`jan-dec/2` is every second month, as `1-12/2` is: the step after a range of month
    names was dropped, and the task fired every month (`jan/3` only in January)."""
    since = utc(2026, 12, 7)
    for names, numbers in [
        ("0 0 1 jan-dec/2 *", "0 0 1 1-12/2 *"),
        ("0 0 1 JAN-DEC/2 *", "0 0 1 1-12/2 *"),
        ("0 0 1 jan/3 *", "0 0 1 1/3 *"),
        ("0 0 1 feb-nov/3,dec *", "0 0 1 2-11/3,12 *"),
        ("0 6 1 mar-oct/2 mon", "0 6 1 3-10/2 mon"),  # either day: the month applies to both
    ]:
        named = build_trigger({"cron": names, "timezone": "Europe/Berlin"}, since)
        numbered = build_trigger({"cron": numbers, "timezone": "Europe/Berlin"}, since)
        assert next_fire_times(named, since, 12) == next_fire_times(numbered, since, 12), names
    every_other = build_trigger({"cron": "0 0 1 jan-dec/2 *"}, since)
    assert [f.month for f in next_fire_times(every_other, since, 3)] == [1, 3, 5]


def test_a_month_field_that_is_not_one_is_refused() -> None:
    """What follows a month name was ignored: `jan-feb-mar` fired in January and February."""
    for cron in ("0 0 * jan-feb-mar *", "0 0 * jan-dec/0 *", "0 0 * janx *", "0 0 * jan-1 *"):
        with pytest.raises(ValueError):
            build_trigger({"cron": cron}, utc(2026, 12, 7))


def test_every_time_in_the_skipped_hour_fires_an_hour_later() -> None:
    """`*/15 2 * * *` on the spring day: 02:00, 02:15, 02:30 and 02:45 do not exist, and
    fire at 03:00, 03:15, 03:30 and 03:45, as documented for one such time. Only 03:00
    fired: from there the next 02:xx was the next day's."""
    trigger = build_trigger({"cron": "*/15 2 * * *", "timezone": "Europe/Berlin"}, utc(2027, 1, 1))
    fires = list(slots_between(trigger, utc(2027, 3, 27, 12), utc(2027, 3, 29, 12)))
    berlin = [f.astimezone(ZoneInfo("Europe/Berlin")).strftime("%d %H:%M%z") for f in fires]
    assert berlin == [
        *("28 03:00+0200", "28 03:15+0200", "28 03:30+0200", "28 03:45+0200"),
        *("29 02:00+0200", "29 02:15+0200", "29 02:30+0200", "29 02:45+0200"),
    ]
    # A skipped time that has a fire of its own fires once (02:30 and 03:30 at 03:30)
    both = build_trigger({"cron": "30 1-4 * * *", "timezone": "Europe/Berlin"}, utc(2027, 1, 1))
    fires = list(slots_between(both, utc(2027, 3, 27, 23), utc(2027, 3, 28, 6)))
    berlin = [f.astimezone(ZoneInfo("Europe/Berlin")).strftime("%H:%M%z") for f in fires]
    assert berlin == ["01:30+0100", "03:30+0200", "04:30+0200"]


def test_the_scheduler_wakes_at_every_slot_of_the_skipped_hour() -> None:
    """The job's trigger (what wakes the scheduler) agrees with the slots: after the fire
    at 03:00 it woke next at 02:00 the next day, and found 03:15 to 03:45 late."""
    inner = build_trigger({"cron": "*/15 2 * * *", "timezone": "Europe/Berlin"}, utc(2027, 1, 1))
    assert isinstance(inner, CrontabTrigger)
    job = pickle.loads(pickle.dumps(SlotTrigger(inner)))  # jobs are stored pickled
    fired = job.get_next_fire_time(None, utc(2027, 3, 28, 0, 30))
    wakes = []
    while fired is not None and len(wakes) < 5:
        wakes.append(fired)
        fired = job.get_next_fire_time(fired, fired + timedelta(seconds=1))
    assert wakes == list(slots_between(inner, utc(2027, 3, 28, 0, 30), wakes[-1]))
    assert [w.strftime("%H:%M") for w in wakes] == ["01:00", "01:15", "01:30", "01:45", "00:00"]
