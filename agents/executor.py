"""The life of one command on the agent: check, accept, run under its locks, report.

Order of writes matters for at-most-once: `started` is recorded before the machine
is touched and the final event is recorded before it is published, so a crash at
any point leaves a record the next process can answer from without running again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tme.agents.checks import Plan, Refused, check_command, is_expired
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet
from tme.agents.operations import run_plan
from tme.errors import DriverError, TMEError

if TYPE_CHECKING:  # for annotations; make_event imports tme.protocol when it builds an event
    from tme.protocol import Command, Event, EventType

log = logging.getLogger(__name__)

EventSink = Callable[["Event"], None]


def make_event(command: Command, type_: EventType, **fields: Any) -> Event:
    from tme.protocol import Event

    return Event(
        command_id=command.id, type=type_, site=command.site, agent=command.agent, **fields
    )


CANCEL_OP = "cancel"  # a stop request naming another command (params.command_id)


class CommandExecutor:
    def __init__(
        self,
        record: CommandRecord,
        devices: DeviceSet,
        publish: EventSink,
        *,
        worker_count: int,
        allow_shell: bool,
    ) -> None:
        self.record = record
        self.devices = devices
        self.publish = publish
        self.allow_shell = allow_shell
        self._workers = asyncio.Semaphore(worker_count)
        self._stop_requested: set[str] = set()

    def request_stop(self, command_id: str) -> None:
        """Mark a command as stopped on request, before its task is cancelled."""
        self._stop_requested.add(command_id)

    def finish(self, command: Command, type_: EventType, **fields: Any) -> Event:
        """Record the final event, then publish it (the record is what a duplicate gets)."""
        event = make_event(command, type_, **fields)
        self.record.finish(event)
        self.publish(event)
        return event

    async def execute(self, command: Command) -> Event:
        """Run a newly recorded command to its final event (or `canceled` on request)."""
        try:
            return await self._execute(command)
        except asyncio.CancelledError:
            if command.id not in self._stop_requested:
                raise  # the agent is stopping: a restart answers from the record
            self._stop_requested.discard(command.id)
            entry = self.record.get(command.id)
            started = entry is not None and entry.stage == "started"
            return self.finish(
                command,
                "canceled",
                reason="stopped on request" if started else "canceled before it started",
                not_started=not started,
            )

    async def _execute(self, command: Command) -> Event:
        if is_expired(command):
            return self.finish(
                command, "expired", reason="received after not_after", not_started=True
            )
        try:
            plan = check_command(command, self.devices, self.allow_shell)
        except Refused as exc:
            return self.finish(command, "rejected", reason=exc.reason, not_started=True)
        self.publish(make_event(command, "accepted"))
        async with self._workers:
            lock = self.devices.bus_lock(plan.device) if plan.device else contextlib.nullcontext()
            async with lock:
                if is_expired(command):  # it waited for a worker or the bus too long
                    return self.finish(
                        command, "expired", reason="not started before not_after", not_started=True
                    )
                return await self._run(plan)

    async def _run(self, plan: Plan) -> Event:
        command = plan.command
        self.record.mark_started(command.id)
        self.publish(make_event(command, "started"))

        def log_line(line: str) -> None:
            self.publish(make_event(command, "log", line=line))

        try:
            result = await asyncio.wait_for(
                run_plan(plan, log_line, allow_shell=self.allow_shell), command.timeout_s
            )
        except TimeoutError:
            return self.finish(
                command,
                "timed_out",
                reason=f"no result within {command.timeout_s} s; operation cancelled",
            )
        except DriverError as exc:
            return self.finish(
                command, "failed", reason=_driver_reason(exc), result=_driver_details(exc)
            )
        except TMEError as exc:
            return self.finish(command, "failed", reason=exc.message)
        except Exception as exc:
            log.exception("command %s (%s) crashed", command.id, command.op)
            return self.finish(command, "failed", reason=f"agent error: {exc!r}")
        return self.finish(command, "succeeded", result=result)

    def outcome_unknown(self, command: Command) -> Event:
        """A command recorded as started by an earlier process that never finished it."""
        return self.finish(
            command,
            "failed",
            not_started=False,
            reason="outcome unknown: the agent stopped while it was running",
        )


def _driver_reason(exc: DriverError) -> str:
    if exc.modbus_exception is not None and "exception" not in exc.message.lower():
        return f"{exc.message} (Modbus exception {exc.modbus_exception})"
    return exc.message


def _driver_details(exc: DriverError) -> dict[str, Any] | None:
    if exc.modbus_exception is None:
        return None
    return {"modbus_exception": exc.modbus_exception, "retryable": exc.retryable}
