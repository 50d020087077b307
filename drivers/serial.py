"""Serial line driver: commands named in the device profile, sent as text lines.

What to say comes from the profile (request template, argument rules, how to
parse the reply); how bytes move is `LineChannel`. pyserial blocks, so each
exchange runs in a worker thread; a lock keeps one exchange on the wire at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable
from typing import Any

from tme.drivers.base import Value, require_setting, serial_bus_key
from tme.drivers.profile import CommandSpec, DeviceProfile
from tme.drivers.serial_line import MAX_LINE_BYTES, LineChannel
from tme.errors import DriverError

ERROR_PREFIX = "ERR"  # how a line instrument reports a refused command


class SerialDriver:
    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 9600,
        terminator: str = "\n",
        timeout_s: float = 1.0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        require_setting("timeout_s", timeout_s, low=0.001)
        require_setting("max_line_bytes", max_line_bytes, low=1, whole=True)
        self.bus_key = serial_bus_key(port)
        self.request_timeout_s = timeout_s  # see tme.drivers.base.AnswersWithin
        self._channel = LineChannel(
            port,
            baudrate=baudrate,
            terminator=terminator.encode(),
            timeout_s=timeout_s,
            max_line_bytes=max_line_bytes,
        )
        self._lock = asyncio.Lock()

    @property
    def requests_sent(self) -> int:
        """Requests written to the link so far (tme.drivers.base.CountsRequests): a
        command cut off while its link was still opening wrote none."""
        return self._channel.requests_sent

    async def start(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._channel.open)

    async def stop(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._channel.close)

    def check_request(self, profile: DeviceProfile, command: str, args: list[Any]) -> str:
        """The request line for a profile command, or EnvelopeViolation: the profile's
        rules, and what this link carries as one line (its terminator, its encoding)."""
        checked = profile.check_command(command, args)
        request = profile.commands[command].request.format(*checked)
        self._channel.check_one_line(request)
        return request

    async def run_command(self, profile: DeviceProfile, command: str, args: list[Any]) -> str:
        """Send a profile command; return the reply text (its pattern's group, if any)."""
        request = self.check_request(profile, command, args)  # raises: nothing is sent
        spec = profile.commands[command]
        async with self._lock:
            # after a failed request its late reply may still come: wait here, where a
            # cancelled task stops before its request is sent (a worker thread cannot)
            await asyncio.sleep(self._channel.quiet_left_s())
            reply = await _to_thread_holding_on(self._channel.exchange, request)
        if reply.startswith(ERROR_PREFIX):
            raise DriverError(
                f"{command!r}: device refused {request!r}: {reply}", details={"reply": reply}
            )
        text = extract(spec, reply, command)
        parse_reply(spec, text, command)  # a reply that does not parse is an error now, not later
        return text

    async def query(self, profile: DeviceProfile, command: str, args: list[Any]) -> Value:
        """Like run_command, but parsed as the profile says (float, int or str)."""
        text = await self.run_command(profile, command, args)
        return parse_reply(profile.commands[command], text, command)


async def _to_thread_holding_on(work: Callable[[str, threading.Event], str], request: str) -> str:
    """Run `work` in a thread; if cancelled, still wait for the thread before re-raising.

    A worker thread cannot be stopped: it reads the port until its own deadline. The
    caller holds the bus lock, so keeping it until then means no other exchange runs
    beside the abandoned one. The thread is told it was abandoned, so a request it has
    not written yet (the link was still opening) is never written.
    """
    abandoned = threading.Event()
    exchange = asyncio.ensure_future(asyncio.to_thread(work, request, abandoned))
    try:
        return await asyncio.shield(exchange)
    except asyncio.CancelledError:
        abandoned.set()
        while not exchange.done():
            with contextlib.suppress(asyncio.CancelledError):  # bounded by the read deadline
                await asyncio.wait({exchange})
        if not exchange.cancelled():
            exchange.exception()  # its failure is not news to anyone: the caller gave up
        raise


def extract(spec: CommandSpec, reply: str, command: str) -> str:
    if spec.response is None:
        return reply
    match = re.search(spec.response, reply)
    if match is None:
        raise DriverError(f"{command!r}: reply {reply!r} does not match {spec.response!r}")
    return match.group(1) if match.groups() else match.group(0)


def parse_reply(spec: CommandSpec, text: str, command: str) -> Value:
    try:
        if spec.parse == "float":
            return float(text)
        if spec.parse == "int":
            return int(text)
    except ValueError:
        raise DriverError(f"{command!r}: reply {text!r} is not a {spec.parse}") from None
    return text


def serial_driver(port: str, **options: Any) -> SerialDriver:
    return SerialDriver(port, **options)
