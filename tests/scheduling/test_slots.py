"""Every schedule slot is handled once: fired, or recorded as skipped with the reason.

Fixed times stand in for the clock, so a "controller restart" is a call after a gap.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from tme.controller.schedule_fire import MAX_MISSED_RECORDS, handle_due_slots
from tme.controller.services.policies import get_policy
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run
from tme.controller.store.workflow_models import ScheduleSlot
from tme.schemas import Schedule, TaskCreate

T0 = datetime(2025, 1, 6, 12, tzinfo=UTC)


def scheduled(session: Session, **fields: object) -> int:
    """A task whose schedule was set at T0 (a one-off `at` is stored as it was then:
    created now, one at 2025 would be refused as long past)."""
    schedule = Schedule.model_validate(fields.pop("schedule", {"every_s": 10}))
    data = TaskCreate.model_validate({"name": "tick", "schedule": {"every_s": 10}, **fields})
    task, _ = create_task(session, data)
    task.schedule = schedule.model_dump(mode="json")
    get_policy(session, task).schedule_changed_at = T0
    session.commit()
    assert task.id is not None
    return task.id


def runs(session: Session, task_id: int) -> list[Run]:
    return list(
        session.exec(select(Run).where(Run.task_id == task_id).order_by(col(Run.created_at)))
    )


def test_on_time_fires_one_run_per_slot(session: Session) -> None:
    task_id = scheduled(session, overlap={"policy": "allow", "max": 10})
    for second in (10, 20, 30):
        assert (
            handle_due_slots(session, task_id, T0 + timedelta(seconds=second, milliseconds=5), None)
            == 1
        )
    assert [r.state for r in runs(session, task_id)] == ["pending"] * 3


def test_calling_again_repeats_nothing(session: Session) -> None:
    task_id = scheduled(session)
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=11), None) == 1
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=11), None) == 0
    assert len(runs(session, task_id)) == 1


def test_restart_within_grace_fires_once_and_records_the_others(session: Session) -> None:
    task_id = scheduled(session, misfire={"grace_s": 60, "policy": "skip"})
    # down for 45 s: slots 10..40 are within the grace; one run, no burst
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=45), None) == 1
    states = [r.state for r in runs(session, task_id)]
    assert states.count("skipped") == 3 and states.count("pending") == 1
    assert all("superseded" in r.reason for r in runs(session, task_id) if r.state == "skipped")


def test_restart_beyond_grace_with_skip_records_every_slot(session: Session) -> None:
    task_id = scheduled(session, misfire={"grace_s": 5, "policy": "skip"})
    started = handle_due_slots(session, task_id, T0 + timedelta(seconds=66), None)
    assert started == 0  # every slot (10..60) is more than 5 s late
    skipped = runs(session, task_id)
    assert len(skipped) == 6
    assert all(r.state == "skipped" and "beyond the misfire grace" in r.reason for r in skipped)
    slots = session.exec(select(ScheduleSlot).where(ScheduleSlot.task_id == task_id)).all()
    assert len(slots) == 6 and {s.outcome for s in slots} == {"missed"}


def test_restart_beyond_grace_with_run_once_fires_one(session: Session) -> None:
    task_id = scheduled(session, misfire={"grace_s": 5, "policy": "run_once"})
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=65), None) == 1
    states = [r.state for r in runs(session, task_id)]
    assert states.count("pending") == 1 and states.count("skipped") == 5


def test_machine_tasks_skip_late_slots_by_default(session: Session) -> None:
    target = {"site": "s1", "agent": "a1"}
    task_id = scheduled(session, op="noop", target=target, misfire={"grace_s": 1})
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=35), None) == 0
    assert {r.state for r in runs(session, task_id)} == {"skipped"}


def test_a_long_outage_is_summarised_not_dropped(session: Session) -> None:
    task_id = scheduled(session, misfire={"grace_s": 1, "policy": "skip"})
    handle_due_slots(session, task_id, T0 + timedelta(hours=1, seconds=5), None)
    recorded = runs(session, task_id)
    assert len(recorded) == MAX_MISSED_RECORDS + 1
    summary = [r for r in recorded if "each is summarised" in r.reason]
    assert len(summary) == 1 and "missed 260 schedule slots" in summary[0].reason


@pytest.mark.parametrize(
    "policy,expected", [("skip", ["pending", "skipped"]), ("queue", ["pending", "waiting"])]
)
def test_overlap_policy(session: Session, policy: str, expected: list[str]) -> None:
    task_id = scheduled(session, overlap={"policy": policy})
    handle_due_slots(session, task_id, T0 + timedelta(seconds=10), None)
    handle_due_slots(session, task_id, T0 + timedelta(seconds=20), None)
    assert [r.state for r in runs(session, task_id)] == expected


def test_paused_schedule_fires_nothing(session: Session) -> None:
    task_id = scheduled(session)
    from tme.controller.store.models import Task

    task = session.get(Task, task_id)
    assert task is not None
    get_policy(session, task).paused = True
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=30), None) == 0
    assert runs(session, task_id) == []


def test_one_off_set_just_after_its_time_fires_once(session: Session) -> None:
    # "at" a moment before the task is stored (a client clock slightly ahead, "at" now):
    # within the grace it fires, once; it is not silently never run.
    task_id = scheduled(session, schedule={"at": (T0 - timedelta(seconds=2)).isoformat()})
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=1), None) == 1
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=2), None) == 0
    assert [r.state for r in runs(session, task_id)] == ["pending"]
    # One set long after its time is not caught up (as a resumed schedule owes nothing
    # for its pause), whatever the misfire policy.
    at = (T0 - timedelta(hours=3)).isoformat()
    old = scheduled(session, schedule={"at": at}, misfire={"policy": "run_once"})
    assert handle_due_slots(session, old, T0 + timedelta(seconds=1), None) == 0
    assert runs(session, old) == []


@pytest.mark.parametrize(("resumed_s", "fired"), [(50, 1), (120, 0)])
def test_a_one_off_whose_time_came_during_a_pause(
    session: Session, resumed_s: int, fired: int
) -> None:
    # As docs/schedules.md says: resumed within its misfire grace of its time it fires
    # then, once; resumed later it never fires, and nothing is recorded for it.
    from tme.controller.store.models import Task

    at = (T0 + timedelta(seconds=30)).isoformat()
    task_id = scheduled(session, schedule={"at": at}, misfire={"grace_s": 60, "policy": "skip"})
    task = session.get(Task, task_id)
    assert task is not None
    policy = get_policy(session, task)
    policy.paused = True
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=31), None) == 0
    resumed = T0 + timedelta(seconds=resumed_s)
    policy.paused, policy.schedule_changed_at = False, resumed  # what resume stores
    assert handle_due_slots(session, task_id, resumed, None) == fired
    assert handle_due_slots(session, task_id, resumed + timedelta(hours=1), None) == 0
    assert len(runs(session, task_id)) == fired


def test_a_daily_cron_fires_once_on_the_autumn_dst_day(session: Session) -> None:
    # 02:30 Berlin happens twice on 26 Oct 2025 (00:30 and 01:30 UTC); APScheduler fires
    # the job at both, and the second fire must find no slot left to run.
    task_id = scheduled(
        session,
        schedule={"cron": "30 2 * * *", "timezone": "Europe/Berlin"},
        overlap={"policy": "allow", "max": 10},
    )
    from tme.controller.store.models import Task

    task = session.get(Task, task_id)
    assert task is not None
    get_policy(session, task).schedule_changed_at = datetime(2025, 10, 25, 12, tzinfo=UTC)
    session.commit()
    for fired_at in (datetime(2025, 10, 26, 0, 30, 1), datetime(2025, 10, 26, 1, 30, 1)):
        handle_due_slots(session, task_id, fired_at.replace(tzinfo=UTC), None)
    assert handle_due_slots(session, task_id, datetime(2025, 10, 27, 1, 30, 1, tzinfo=UTC), None)
    assert [r.state for r in runs(session, task_id)] == ["pending", "pending"]  # 26th, 27th


def test_a_grace_of_zero_still_fires_on_time(session: Session) -> None:
    # "never start late": a fire comes a few milliseconds after its slot even so, and
    # must run rather than be recorded as missed, slot after slot.
    task_id = scheduled(session, misfire={"grace_s": 0, "policy": "skip"})
    for second in (10, 20):
        fired_at = T0 + timedelta(seconds=second, milliseconds=40)
        assert handle_due_slots(session, task_id, fired_at, None) == 1
    assert handle_due_slots(session, task_id, T0 + timedelta(seconds=35), None) == 0  # 5 s late
    assert [r.state for r in runs(session, task_id)] == ["pending", "skipped", "skipped"]


def test_a_one_off_at_now_with_no_grace_is_taken_and_fires(session: Session) -> None:
    # "at": now with grace 0 reaches the controller a moment late; it is on time for
    # the scheduler (ON_TIME_S), so it must not be refused as past.
    from tme.controller.store.models import utcnow

    at = (utcnow() - timedelta(milliseconds=300)).isoformat()
    data = TaskCreate.model_validate(
        {"name": "now", "schedule": {"at": at}, "misfire": {"grace_s": 0, "policy": "skip"}}
    )
    task, _ = create_task(session, data)
    session.commit()
    assert handle_due_slots(session, task.id or 0, utcnow(), None) == 1
