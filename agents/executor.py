"""The life of one command on the agent: check, accept, run under its locks, report.

Order of writes matters for at-most-once: `started` is recorded before the machine
is touched and the final event is recorded before it is published, so a crash at
any point leaves a record the next process can answer from without running again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tme.agents.checks import (
    CHECK_OP,
    STOP_OP,
    Plan,
    Refused,
    changes_device,
    check_command,
    checked_command,
    is_expired,
    what_it_would_do,
)
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet
from tme.agents.effect import wait_for_effect
from tme.agents.interlocks import check_before_change, needs_reading
from tme.agents.lockout import Lockouts
from tme.agents.operations import run_plan
from tme.agents.pacing import Change, PointChanges, paced_points
from tme.agents.priority_lock import PrioritySemaphore
from tme.agents.run_limits import (
    TimeLimit,
    after_hold,
    driver_details,
    driver_reason,
    not_opened_reason,
    time_limit,
)
from tme.drivers.base import AnswersWithin
from tme.errors import DriverError, EnvelopeViolation, TMEError

if TYPE_CHECKING:  # for annotations; make_event imports tme.protocol when it builds an event
    from tme.protocol import Command, Event, EventType

log = logging.getLogger(__name__)

EventSink = Callable[["Event"], None]
Release = Callable[[], Awaitable[None]]  # frees what a running command holds


def make_event(command: Command, type_: EventType, **fields: Any) -> Event:
    from tme.protocol import Event

    return Event(
        command_id=command.id, type=type_, site=command.site, agent=command.agent, **fields
    )


CANCEL_OP = "cancel"  # a stop request naming another command (params.command_id)
# Where a device.stop waits for its bus: before every command waiting there, whatever
# their priority (0 to 9). It cancels the commands of its own device, so it waits only
# for what other devices on its bus are doing now, never for what queued behind that.
STOP_RANK = 10
# A command's log lines wait this long for its next event to ride on (a Modbus write
# and its read-back take a few ms, so their lines go with the final event instead of
# one message each); a slower operation's lines go on their own after this delay.
LINE_DELAY_S = 0.05
MAX_HELD_LINES = 100  # held lines go at once past this many


def _would_be_refused(refusal: str) -> str:
    """A check's answer for a command the agent would refuse, saying why."""
    return f"would be refused: {refusal}"


class _HeldLines:
    """Log lines of a running command, sent with its final event, its next progress
    event or after LINE_DELAY_S.

    Called on the agent's event loop (operations log from their coroutines)."""

    def __init__(self, command: Command, publish: EventSink) -> None:
        self.command = command
        self.publish = publish
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= MAX_HELD_LINES:
            self.send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LINE_DELAY_S, self.send)

    def take(self) -> str | None:
        """The held lines as one text (None when there are none), no longer held."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        lines, self._lines = self._lines, []
        return "\n".join(lines) if lines else None

    def send(self) -> None:
        text = self.take()
        if text is not None:
            self.publish(make_event(self.command, "log", line=text))

    def progress(self, result: dict[str, Any]) -> None:
        """Say how the command is going at once (a stop's first writes: the device is
        safe), with the lines held so far."""
        self.publish(make_event(self.command, "progress", result=result, line=self.take()))


class CommandExecutor:
    def __init__(
        self,
        record: CommandRecord,
        devices: DeviceSet,
        publish: EventSink,
        *,
        worker_count: int,
        allow_shell: bool,
        lockouts: Lockouts | None = None,
        stops: Lockouts | None = None,
        changes: PointChanges | None = None,
    ) -> None:
        self.record = record
        self.devices = devices
        self.publish = publish
        self.allow_shell = allow_shell
        self.lockouts = lockouts
        self.stops = stops  # devices stopped (latched) until a device.resume
        # when each point with a min_interval_s last changed (the agent's persists)
        self.changes = changes if changes is not None else PointChanges(None)
        # Commands waiting for a worker (or a bus) go by priority, then as they came.
        self._workers = PrioritySemaphore(worker_count)
        # commands to stop, with why: "" for a stop request naming the command
        self._stop_requested: dict[str, str] = {}
        # Set when the agent stops: a command not started yet stays received (no final
        # event), for the next process to run.
        self.stopping = False

    def request_stop(self, command_id: str, why: str = "") -> None:
        """Mark a command as stopped on request, before its task is cancelled; the first
        why stays (a device stop's, when the run's own stop request follows it)."""
        self._stop_requested.setdefault(command_id, why)

    def finish(
        self, command: Command, type_: EventType, lines: _HeldLines | None = None, **fields: Any
    ) -> Event:
        """Record the final event, then publish it (the record is what a duplicate gets);
        log lines still held go with it."""
        text = lines.take() if lines is not None else None
        if text is not None:
            fields["line"] = text
        event = make_event(command, type_, **fields)
        self.record.finish(event)
        self.publish(event)
        return event

    async def execute(self, command: Command) -> Event | None:
        """Run a newly recorded command to its final event (or `canceled` on request);
        None when the agent began to stop before the command started (left received)."""
        try:
            return await self._execute(command)
        except asyncio.CancelledError:
            if command.id not in self._stop_requested:
                raise  # the agent is stopping: a restart answers from the record
            return self._stopped(command)

    def stopped_before_its_first_step(self, command_id: str) -> None:
        """Answer a command whose task was cancelled on request before it ran at all:
        its coroutine never began, so `execute` could not. Unanswered, it would stay
        received and run when the gateway offers it again."""
        if command_id not in self._stop_requested:
            return  # the agent is stopping: a restart runs it or answers from the record
        entry = self.record.get(command_id)
        if entry is None or entry.final_event is not None:
            self._stop_requested.pop(command_id, None)
            return
        self._stopped(entry.command)

    def _stopped(self, command: Command) -> Event:
        why = self._stop_requested.pop(command.id, "")
        entry = self.record.get(command.id)
        started = entry is not None and entry.stage == "started"
        reason = "stopped on request" if started else "canceled before it started"
        return self.finish(
            command,
            "canceled",
            reason=f"{reason}: {why}" if why else reason,
            not_started=not started,
        )

    async def _execute(self, command: Command) -> Event | None:
        if is_expired(command):
            return self.finish(
                command, "expired", reason="received after not_after", not_started=True
            )
        if command.op == CHECK_OP:
            return await self._dry_run(command)
        try:
            plan = check_command(command, self.devices, self.allow_shell)
        except Refused as exc:
            return self.finish(command, "rejected", reason=exc.reason, not_started=True)
        except Exception as exc:  # a check that crashed: answer, or it is offered again forever
            log.exception("checking command %s (%s) crashed", command.id, command.op)
            reason = f"the agent could not check this command ({exc!r}); it was not run"
            return self.finish(command, "rejected", reason=reason, not_started=True)
        refusal = self._locked_out(plan)
        if refusal is not None:
            return self.finish(command, "rejected", reason=refusal, not_started=True)
        self.publish(make_event(command, "accepted"))
        # The buses first, then a worker: a command queued behind a hung device waits for
        # its bus without holding one of the workers the agent's other buses need.
        # A stop waits for no worker: every worker may be busy on other buses.
        # At each, it waits behind the commands of higher priority and those of its own
        # priority that came earlier; a command running goes on whatever comes.
        rank = rank_of(command)
        workers = contextlib.nullcontext() if command.op == STOP_OP else self._workers.at(rank)
        async with self._changing(plan, rank), contextlib.AsyncExitStack() as held:
            # released early by a write that waits for its effect (it reads under its
            # bus lock alone, one read at a time)
            await held.enter_async_context(self.devices.locks_for(plan, rank))
            await held.enter_async_context(workers)
            if self.stopping:
                return None  # the next process runs it: left received, not started
            if is_expired(command):  # it waited for the bus or a worker too long
                return self.finish(
                    command, "expired", reason="not started before not_after", not_started=True
                )
            refusal = self._locked_out(plan)  # locked out while it waited for the bus
            if refusal is not None:
                return self.finish(command, "rejected", reason=refusal, not_started=True)
            # the command's timeout covers what it reads before the change, and the change
            limit = time_limit(command)
            if command.op == STOP_OP and plan.device is not None:
                limit = after_hold(limit, plan.device.cut_off_until, command.timeout_s)
            lines = _HeldLines(command, self.publish)
            unchanged: frozenset[str] = frozenset()  # points already holding their value
            if needs_reading(plan):
                checked = await self._check_before_change(plan, lines, limit)
                if not isinstance(checked, frozenset):
                    return checked  # refused, or what it needed could not be read
                unchanged = checked
            paced = paced_points(plan) - unchanged
            return await self._run(plan, lines, limit, paced, held.aclose)

    async def _dry_run(self, check: Command) -> Event | None:
        """A device.check: the command it names checked as that command would be (its
        envelope, the device's lockout or stop, what its interlocks, step limit and min
        interval read now), and nothing written or sent. Succeeded: it would run;
        rejected: it would be refused, saying why; failed: what the checks needed could
        not be read."""
        try:
            plan = check_command(checked_command(check), self.devices, self.allow_shell)
        except Refused as exc:
            return self.finish(
                check, "rejected", reason=_would_be_refused(exc.reason), not_started=True
            )
        refusal = self._locked_out(plan)
        if refusal is not None:
            return self.finish(
                check, "rejected", reason=_would_be_refused(refusal), not_started=True
            )
        lines = _HeldLines(check, self.publish)
        if needs_reading(plan):
            rank = rank_of(check)
            async with self.devices.locks_for(plan, rank), self._workers.at(rank):
                if self.stopping:
                    return None  # the next process checks it
                limit = time_limit(check)
                checked = await self._check_before_change(plan, lines, limit, a_check=True)
                if not isinstance(checked, frozenset):
                    return checked
        would = what_it_would_do(plan)
        return self.finish(
            check,
            "succeeded",
            lines,
            reason=f"would {would}; nothing was written or sent (a check)",
            result={"would": would, "op": plan.command.op},
        )

    async def _check_before_change(
        self, plan: Plan, lines: _HeldLines, limit: TimeLimit, a_check: bool = False
    ) -> Event | frozenset[str]:
        """Read the interlocks, step limit and min interval of the plan's change; the
        final event when they refuse it or cannot be read (nothing was written either
        way), else the points found holding what it writes already (no change).
        `a_check`: the plan is a check's, whose refusal says the command would be refused."""
        command = plan.command
        try:
            async with asyncio.timeout_at(limit.at):
                held = await check_before_change(plan, lines.add, self.changes)
        except EnvelopeViolation as exc:
            self._note_link(plan, True)
            reason = f"{exc.message}; nothing was written"
            if a_check:
                reason = _would_be_refused(reason)
            return self.finish(command, "rejected", lines, reason=reason, not_started=True)
        except TimeoutError:
            reason = (
                f"what this change's interlocks, step limit and min interval need could not"
                f" be read {limit.said}; nothing was written"
            )
            self._note_link(plan, False, reason)
            return self.finish(command, "failed", lines, reason=reason, not_started=True)
        except DriverError as exc:
            reason = (
                f"could not read what this change's interlocks, step limit and min interval"
                f" need: {exc.message}; nothing was written"
            )
            self._note_link(plan, exc.device_answered, reason)
            return self.finish(command, "failed", lines, reason=reason, not_started=True)
        return held

    def _changing(self, plan: Plan, rank: int) -> contextlib.AbstractAsyncContextManager[Any]:
        """The device's change lock for a change of it (DeviceSet.change_lock); not for
        a stop, which goes before everything of its device and ends a wait for an effect."""
        if plan.device is None or plan.command.op == STOP_OP or changes_device(plan) is None:
            return contextlib.nullcontext()
        return self.devices.change_lock(plan.device).at(rank)

    def _locked_out(self, plan: Plan) -> str | None:
        """Why the plan may not run now that its device is locked out, or stopped
        (None: it may). A stop of a stopped device runs: it writes the safe values again."""
        what = changes_device(plan)
        if what is None or plan.device is None:
            return None
        latches = [self.lockouts]
        if plan.command.op != STOP_OP:
            latches.append(self.stops)
        for latch in latches:
            found = latch.get(plan.device.name) if latch is not None else None
            if found is not None:
                return found.refusal(what)
        return None

    async def _run(
        self,
        plan: Plan,
        lines: _HeldLines,
        limit: TimeLimit,
        paced: frozenset[str],
        release: Release,
    ) -> Event:
        """Run the checked plan and finish its command; `paced`: the points with a
        min_interval_s it changes, whose change is recorded before the machine is
        touched, as `started` is; `release` frees its buses and worker once a write is
        done and only its effect is awaited."""
        command = plan.command
        self.record.mark_started(command.id)
        noted = self._note_changes(plan, paced)
        self.publish(make_event(command, "started"))

        sent_before = _requests_sent(plan)
        awaiting_effect = False  # the write is done: nothing of it is in flight any more
        try:
            # asyncio.timeout, not wait_for: the operation runs in this task, where
            # wait_for would make a task of its own for every command.
            async with asyncio.timeout_at(limit.at):
                result = await run_plan(
                    plan, lines.add, allow_shell=self.allow_shell, progress=lines.progress
                )
                if plan.expect is not None:
                    awaiting_effect = True
                    await release()
                    result["effect"] = await self._effect_of(plan, result, lines)
        except TimeoutError:
            if awaiting_effect:
                reason = (
                    f"no result {limit.result_said}: the write was sent and its effect not"
                    " yet seen; operation cancelled"
                )
                return self.finish(command, "timed_out", lines, reason=reason)
            if sent_before is not None and _requests_sent(plan) == sent_before:
                # cut off before any request left (its connection was still opening): as
                # a connection that could not be opened, not started, so even a write
                # may be retried
                reason = not_opened_reason(plan, limit)
                self._note_link(plan, False, reason)
                self._undo_changes(plan, noted)
                return self.finish(command, "failed", lines, reason=reason, not_started=True)
            reason = f"no result {limit.result_said}; operation cancelled"
            self._note_link(plan, False, reason)
            return self.finish(command, "timed_out", lines, reason=reason)
        except DriverError as exc:
            # Not started when no request reached the device (its connection or port could
            # not be opened): the controller may then retry even a write.
            reason = driver_reason(exc)
            self._note_link(plan, exc.device_answered, reason)
            if exc.not_sent:
                self._undo_changes(plan, noted)
            return self.finish(
                command,
                "failed",
                lines,
                reason=reason,
                result=driver_details(exc),
                not_started=exc.not_sent,
            )
        except TMEError as exc:
            return self.finish(command, "failed", lines, reason=exc.message)
        except asyncio.CancelledError:
            lines.send()  # stopped on request: what it logged so far still goes
            if not awaiting_effect:  # a read cut off changes nothing on the device
                _note_cut_off(plan)
            raise
        except Exception as exc:
            log.exception("command %s (%s) crashed", command.id, command.op)
            return self.finish(command, "failed", lines, reason=f"agent error: {exc!r}")
        self._note_link(plan, True)
        return self.finish(command, "succeeded", lines, result=result)

    def _note_changes(self, plan: Plan, paced: frozenset[str]) -> dict[str, Change | None]:
        """Record a change of each paced point now; what each replaced, for an undo."""
        device = plan.device
        if device is None:
            return {}
        return {point: self.changes.note(device.name, point) for point in sorted(paced)}

    def _undo_changes(self, plan: Plan, noted: dict[str, Change | None]) -> None:
        """Nothing was sent: the points did not change (the next try is not held back)."""
        if plan.device is not None:
            for point, before in noted.items():
                self.changes.undo(plan.device.name, point, before)

    async def _effect_of(
        self, plan: Plan, written: dict[str, Any], lines: _HeldLines
    ) -> dict[str, Any]:
        """Wait for the write's effect; a failure's result says what was written too."""
        device, expect = plan.device, plan.expect
        assert device is not None and expect is not None
        try:
            bus = self.devices.bus_lock(device).at(rank_of(plan.command))
            return await wait_for_effect(device, expect, bus, lines.add)
        except DriverError as exc:
            exc.result = {**written, **(exc.result or {})}
            raise

    def _note_link(self, plan: Plan, answered: bool, error: str = "") -> None:
        """What the operation found of its device's link (presence tells it)."""
        if plan.device is not None:
            self.devices.note_link(plan.device.name, answered, error)

    def outcome_unknown(self, command: Command) -> Event:
        """A command recorded as started by an earlier process that never finished it."""
        return self.finish(
            command,
            "failed",
            not_started=False,
            reason="outcome unknown: the agent stopped while it was running",
        )


def rank_of(command: Command) -> int:
    """Where the command waits for a bus or a worker: by its priority, a stop before all."""
    return STOP_RANK if command.op == STOP_OP else command.priority


def _note_cut_off(plan: Plan) -> None:
    """A change cut off mid-operation: a request of it may still reach the device, up
    to the driver's answer time from now (a stop writes its safe values again then)."""
    device = plan.device
    if device is None or changes_device(plan) is None:
        return
    if isinstance(device.driver, AnswersWithin):
        until = asyncio.get_running_loop().time() + device.driver.request_timeout_s
        device.cut_off_until = max(device.cut_off_until, until)


def _requests_sent(plan: Plan) -> int | None:
    """How many requests the plan's driver has sent so far; None when it does not count
    them (then any failure may have reached the device)."""
    driver = plan.device.driver if plan.device is not None else None
    # The attribute CountsRequests names, read directly: isinstance against a runtime
    # protocol looks up the protocol's members on every call, once per command here.
    sent = getattr(driver, "requests_sent", None)
    return sent if isinstance(sent, int) else None
