"""APScheduler inside the controller, its jobs kept in step with the tasks' schedules.

One job per scheduled, unpaused task (id "task:<id>", the module-level fire
function by reference, the task id as argument), stored by SQLAlchemyJobStore in
the controller's own database. The job's name carries the schedule's version (when
it was last set or resumed), so a change made while no scheduler ran is noticed at
start. Only the lease holder runs this (see scheduler_lease).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.sched_triggers import SlotTrigger, build_trigger
from tme.controller.schedule_fire import JOB_FUNCTION
from tme.controller.store.models import Task, utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import TaskPolicy
from tme.crontab import CrontabTrigger

log = logging.getLogger("tme.scheduler")

JOBS_TABLE = "tme_scheduler_jobs"
FIRE_THREADS = 4  # fires only write a few rows; more threads would just contend for the DB
# Changes are re-read this far behind the newest stamp seen: a change is stamped when
# its transaction makes it, so one stamped earlier can commit after one stamped later
# has been read. Only tasks that have (or had) a schedule are stamped (policies
# NOT_SCHEDULED), so the window holds few rows; one read again changes nothing.
LOOKBACK = timedelta(minutes=5)


TASKS, POLICIES = table_of(Task), table_of(TaskPolicy)
# Each task's schedule and its version, joined to its policy by the caller (all tasks
# at start, those whose schedule changed since the last look afterwards).
SCHEDULES = select(
    TASKS.c.id, TASKS.c.schedule, POLICIES.c.paused, POLICIES.c.schedule_changed_at
).select_from(TASKS)


def job_id(task_id: int) -> str:
    return f"task:{task_id}"


# How stored triggers are built; part of each job's version, so a job stored by an older
# controller is built again at start. 2: crontab weekdays (0 = Sunday); 3: no day lost
# after the spring DST change; 4: a step after month names (`jan-dec/2`) counts (see
# tme.crontab); 5: a cron wakes at every slot of its wall clock (sched_triggers.SlotTrigger).
TRIGGER_FORMAT = 5


def _version(changed_at: datetime) -> str:
    return f"{changed_at.astimezone(UTC).isoformat()} t{TRIGGER_FORMAT}"


class ScheduleKeeper:
    def __init__(self, engine: Engine, key: str) -> None:
        self.engine = engine
        self.key = key
        self.scheduler: BackgroundScheduler | None = None
        self._seen: datetime | None = None
        # The jobs this keeper holds, by id, with their versions: a task that never had
        # a schedule costs no job-store lookup, and a change read again is not applied
        # again.
        self._jobs: dict[str, str] = {}

    def start(self) -> None:
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOBS_TABLE)},
            executors={"default": ThreadPoolExecutor(FIRE_THREADS)},
            # Coalesce and no grace: after any delay a job runs once, and the fire
            # function accounts for every slot itself (schedule_fire).
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
        )
        self.scheduler.start(paused=True)
        try:
            self.sync_all()
        except BaseException:
            # The lease holder tries again next tick: a scheduler left behind here
            # would be a thread (and its job store) more on every failed try.
            self.stop()
            raise
        self.scheduler.resume()

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None

    def sync_all(self) -> int:
        """Make the stored jobs match every task's schedule; return how many jobs there are."""
        assert self.scheduler is not None
        jobs = {job.id: job.name for job in self.scheduler.get_jobs()}
        self._jobs = dict(jobs)
        self._seen = utcnow()  # the stream starts here (and LOOKBACK behind), not at 1970
        wanted = 0
        with Session(self.engine) as session:
            rows = session.execute(SCHEDULES.outerjoin(POLICIES)).all()
        for task_id, schedule, paused, changed_at in rows:
            jid = job_id(task_id)
            if not schedule or paused or changed_at is None:
                if jid in jobs:
                    self._remove(task_id)
                continue
            wanted += 1
            if jobs.get(jid) != _version(changed_at):
                self._put(task_id, schedule, changed_at)
            self._seen = max(filter(None, [self._seen, changed_at]))
        known = {job_id(r[0]) for r in rows}
        for jid in set(jobs) - known:  # tasks deleted while no scheduler ran
            self._remove(int(jid.split(":", 1)[1]))
        log.info("scheduler started with %d schedules", wanted)
        return wanted

    def sync_changes(self) -> int:
        """Apply schedules set, changed, paused or resumed since the last look (and
        LOOKBACK before it); return how many jobs were put or removed."""
        if self.scheduler is None:
            return 0
        assert self._seen is not None  # set by sync_all at start
        query = SCHEDULES.join(POLICIES).where(
            POLICIES.c.schedule_changed_at > self._seen - LOOKBACK
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        changed = 0
        for task_id, schedule, paused, changed_at in rows:
            held = self._jobs.get(job_id(task_id))
            if schedule and not paused:
                if held != _version(changed_at):
                    self._put(task_id, schedule, changed_at)
                    changed += 1
            elif held is not None:
                self._remove(task_id)
                changed += 1
            self._seen = max(self._seen, changed_at)
        return changed

    def forget(self, task_id: int) -> None:
        """A deleted task: drop its job."""
        if self.scheduler is not None:
            self._remove(task_id)

    def _put(self, task_id: int, schedule: dict[str, Any], changed_at: datetime) -> None:
        assert self.scheduler is not None
        try:
            trigger = build_trigger(schedule, changed_at)
        except (ValueError, KeyError, OverflowError) as exc:  # ZoneInfoNotFoundError: KeyError
            # Stored before a check refused it, or its zone left the system's tz data:
            # this schedule cannot fire, and must not stop all the others from firing.
            log.error("schedule of task %s cannot fire until it is changed: %r", task_id, exc)
            self._remove(task_id)
            self._jobs[job_id(task_id)] = _version(changed_at)  # not tried again each pass
            return
        if isinstance(trigger, CrontabTrigger):
            trigger = SlotTrigger(trigger)
        self.scheduler.add_job(
            JOB_FUNCTION,
            trigger=trigger,
            args=[self.key, task_id],
            id=job_id(task_id),
            name=_version(changed_at),
            replace_existing=True,
        )
        self._jobs[job_id(task_id)] = _version(changed_at)

    def _remove(self, task_id: int) -> None:
        assert self.scheduler is not None
        self._jobs.pop(job_id(task_id), None)
        with contextlib.suppress(JobLookupError):  # an "at" job removes itself once fired
            self.scheduler.remove_job(job_id(task_id))
