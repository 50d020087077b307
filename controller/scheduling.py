"""The controller's scheduling side, started and stopped by ControllerRuntime.

One thread holds (or waits for) the scheduler lease. While this controller holds
it, APScheduler fires schedules and the same thread keeps jobs in step with the
tasks, settles workflow steps, starts due retries, enforces timeouts and shows
gateways whose heartbeats stopped offline. Another controller on the same database
says that it stands by, and takes over once the lease expires (or at once, when the
leader stops cleanly and releases it). A standby's wake (its API settled a run, its
event consumer applied a final state) is sent to the leader through the database
(wake_channel).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.fleet_watch import mark_silent_gateways
from tme.controller.retries import start_due_retries
from tme.controller.schedule_fire import FireContext, register, unregister
from tme.controller.scheduler import ScheduleKeeper
from tme.controller.scheduler_lease import Lease
from tme.controller.services.runs import RunReadyHook
from tme.controller.store.conflicts import in_transaction
from tme.controller.store.models import utcnow
from tme.controller.wake_channel import HOUSEKEEPING, SETTLE, notify
from tme.controller.watchdog import GRACE_S, check_timeouts
from tme.controller.workflow import settle_missed, settle_pending
from tme.failure_log import FailureLog, describe

log = logging.getLogger("tme.scheduler")

LEASE_TTL_S = 15.0  # a dead controller's schedules resume elsewhere within this
TICK_S = 0.5  # workflow steps, retries and timeouts are looked at this often (or on a wake)
# Final runs the workflow cursor went by (a final hop that committed late on PostgreSQL)
# are swept up this often: rare, so a delay of this much is acceptable, and a sweep every
# tick would read every unsettled link (all runs in flight) twice a second for nothing.
SWEEP_S = 30.0
# Gateways whose heartbeats stopped are looked for this often: a small table, and a
# gateway is shown offline within this of its third heartbeat missed.
FLEET_WATCH_S = 5.0


class Scheduling:
    def __init__(
        self,
        engine: Engine,
        hook: RunReadyHook | None,
        settings: Any,
        *,
        lease_ttl_s: float = LEASE_TTL_S,
        tick_s: float = TICK_S,
        sweep_s: float = SWEEP_S,
    ) -> None:
        self.engine = engine
        self.hook = hook
        self.default_timeout_s = float(settings.tasks.default_timeout_s)
        self.watchdog_grace_s = GRACE_S
        self.tick_s = tick_s
        self.sweep_s = sweep_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = Lease(engine, self.holder, lease_ttl_s)
        self.key = str(engine.url)
        self.keeper = ScheduleKeeper(engine, self.key)
        self.leading = False
        self._context = FireContext(engine, hook, self.lease, forget=self.keeper.forget)
        self._wake = threading.Event()
        self._housekeeping_asked = threading.Event()  # by a wake: see `wake`
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renew_every = lease_ttl_s / 3
        self._renewed_at = 0.0
        self._housekeeping_at = 0.0
        self._sweep_at = 0.0  # the first housekeeping pass sweeps
        self._fleet_watch_at = 0.0
        self._told_standby = False
        self.failures = FailureLog(log, "scheduling pass")
        # Called (on this loop's thread) when this controller starts to lead: the parts
        # that work only while it leads start at once, not at their next poll.
        self.on_lead: list[Callable[[], None]] = []

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="tme-scheduling", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.leading:
            self._step_down()
            try:
                self.lease.release()
            except Exception as exc:  # no database: the lease expires by itself
                log.warning(
                    "could not release the scheduler lease (%s); another controller"
                    " takes over once it expires, within %g s",
                    describe(exc),
                    self.lease.ttl.total_seconds(),
                )
            else:
                notify(self.engine, SETTLE)  # a standby takes the lease at once

    def wake(self, *, housekeeping: bool = False) -> None:
        """Have the loop make a pass now, not at its next tick; with `housekeeping`, one
        that also starts due retries and checks timeouts (a resumed task's retry whose
        time came during the pause starts at once, not at the next tick)."""
        self.woken(housekeeping=housekeeping)
        if not self.leading:  # another controller settles the runs: wake it
            notify(self.engine, HOUSEKEEPING if housekeeping else SETTLE)

    def woken(self, *, housekeeping: bool = False) -> None:
        """Wake this loop only (another controller asked: see `wake`)."""
        if housekeeping:
            self._housekeeping_asked.set()
        self._wake.set()

    @property
    def holds_lease(self) -> bool:
        """Whether this controller leads and renewed its lease within the lease's time
        to live: through a database outage `leading` stays true (stepping down needs the
        database), while another controller may take over once the lease expired."""
        return self.leading and time.monotonic() - self._renewed_at < self.lease.ttl.total_seconds()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_pass()
            self._wake.wait(self.tick_s)
            self._wake.clear()

    def run_pass(self) -> None:
        """One turn of the loop: hold (or wait for) the lease, then the leader's step.
        A failure is logged (once, then once a minute while it lasts), never raised:
        the loop must survive a database outage, and the next tick retries."""
        try:
            if time.monotonic() - self._renewed_at >= self._renew_every or not self.leading:
                self._hold_lease()
                self._renewed_at = time.monotonic()
            if self.leading:
                # A wake (a run settled) advances workflows at once; retries and
                # timeouts, which scan every run in flight, wait for their tick unless
                # the wake asked for them. Cleared before the pass that does them, so
                # one asked for during it is not lost.
                asked = self._housekeeping_asked.is_set()
                if asked:
                    self._housekeeping_asked.clear()
                due = asked or time.monotonic() >= self._housekeeping_at
                self.step(housekeeping=due)
                if due:
                    self._housekeeping_at = time.monotonic() + self.tick_s
        except Exception as exc:
            self.failures.failed(exc)
        else:
            self.failures.passed()

    def step(self, *, housekeeping: bool = True) -> None:
        """One pass of the leader's work (also called by tests to avoid waiting a tick):
        schedules and workflow steps, then (with `housekeeping`) retries and timeouts,
        and every `sweep_s` the final runs the workflow cursor went by."""
        self.keeper.sync_changes()
        # Each transaction runs again should it lose a deadlock with a concurrent writer
        # (a status report, the event consumer): store/conflicts.py.
        in_transaction(self.engine, lambda session: settle_pending(session, self.hook))
        if not housekeeping:
            return
        in_transaction(self.engine, self._housekeeping)
        if time.monotonic() >= self._fleet_watch_at:
            in_transaction(self.engine, lambda session: mark_silent_gateways(session, utcnow()))
            self._fleet_watch_at = time.monotonic() + FLEET_WATCH_S
        if time.monotonic() >= self._sweep_at:
            in_transaction(self.engine, lambda session: settle_missed(session, self.hook))
            self._sweep_at = time.monotonic() + self.sweep_s

    def _housekeeping(self, session: Session) -> None:
        """Due retries started and timeouts enforced, in one transaction."""
        now = utcnow()
        start_due_retries(session, self.hook, now)
        check_timeouts(session, now, self.default_timeout_s, self.watchdog_grace_s)

    def _hold_lease(self) -> None:
        held = self.lease.try_acquire()
        if held and not self.leading:
            log.info(
                "this controller (%s) now leads: it schedules, publishes commands and"
                " sends notifications",
                self.holder,
            )
            register(self.key, self._context)
            self.keeper.start()
            self.leading, self._told_standby = True, False
            for started in self.on_lead:
                started()
        elif not held and self.leading:
            log.warning(
                "scheduler lease lost; this controller stops scheduling, publishing and"
                " notifying, and stands by"
            )
            self._step_down()
        elif not held and not self._told_standby:
            current = self.lease.current()
            who = current.holder if current else "another controller"
            until = current.expires_at.isoformat() if current else "?"
            log.warning(
                "another controller (%s) leads on this database; this one stands by"
                " (serving the API) and takes over if its lease expires (now %s)",
                who,
                until,
            )
            self._told_standby = True

    def _step_down(self) -> None:
        self.leading = False
        self.keeper.stop()  # waits for fires in flight, which still need the context
        unregister(self.key, self._context)
