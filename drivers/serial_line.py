"""How bytes move on a line-oriented serial link: one request line, one reply line.

Blocking pyserial code; the driver runs it in a worker thread. Reads are bounded
twice: by a deadline for the whole reply (pyserial's own timeout restarts with
every byte, so a chatty device would never time out) and by a maximum line
length (a device that never sends the terminator cannot grow memory).

A line carries no request id: after a request got no complete reply, its reply may
still come. The next request waits (`quiet_left_s`) until `timeout_s` after the failure
(a reply up to twice the timeout late is then dropped with the input buffer), so it is
never taken as the answer to a later request.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import serial

from tme.errors import DriverError, EnvelopeViolation

MAX_LINE_BYTES = 4096  # far longer than any reply of a line instrument; the buffer cap
POLL_S = 0.05  # pyserial read timeout per chunk: how often the deadline is checked


class LineChannel:
    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 9600,
        terminator: bytes = b"\n",
        timeout_s: float = 1.0,
        max_line_bytes: int = MAX_LINE_BYTES,
        encoding: str = "ascii",
    ) -> None:
        self.url = url
        self.baudrate = baudrate
        self.terminator = terminator
        self.timeout_s = timeout_s
        self.max_line_bytes = max_line_bytes
        self.encoding = encoding
        self._port: Any = None
        self._quiet_at = 0.0  # monotonic time before which the next request must not go
        self.requests_sent = 0  # counted just before each write (tme.drivers.base.CountsRequests)

    def open(self) -> None:
        if self._port is not None:
            return
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self.baudrate, timeout=POLL_S)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DriverError(  # nothing was written: the port never opened
                f"cannot open serial link {self.url}: {exc}", retryable=True, not_sent=True
            ) from None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            # closing a link that already failed may fail again; it is closed either way
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()

    def check_one_line(self, request: str) -> None:
        """Refuse a request that would not reach the device as exactly one line of text.

        A line end inside it (this link's terminator, whatever it is, or CR/LF) would
        make the instrument read a second command that no envelope has checked.
        """
        try:
            line = request.encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise EnvelopeViolation(
                f"request {request!r} holds {exc.object[exc.start : exc.end]!r}, which a "
                f"{self.encoding} line cannot carry",
                details={"reason": "not_allowed", "request": request},
            ) from None
        for end in {self.terminator, b"\r", b"\n"}:
            if end in line:
                raise EnvelopeViolation(
                    f"request {request!r} holds a line end ({end!r}): it would be two commands",
                    details={"reason": "not_allowed", "request": request},
                )
        if len(line) + len(self.terminator) > self.max_line_bytes:
            # an instrument whose input buffer overflows may drop the start of the line
            # and run the rest: no longer line goes out than this link takes back
            raise EnvelopeViolation(
                f"request of {len(line) + len(self.terminator)} bytes is longer than this"
                f" link's max_line_bytes ({self.max_line_bytes})",
                details={"reason": "too_long", "request": request[:64] + "..."},
            )

    def exchange(self, request: str, abandoned: threading.Event | None = None) -> str:
        """Send one request line and return the reply line without its terminator.

        Once `abandoned` is set (the caller gave up) the request is no longer written.
        """
        self.open()
        if abandoned is not None and abandoned.is_set():  # opening took past its timeout
            raise DriverError(
                f"serial link {self.url}: request abandoned before it was sent", not_sent=True
            )
        try:
            self._port.reset_input_buffer()  # a late reply to an earlier request is stale
            # Counted before the write: a caller that gave up reads it once this thread
            # is done (drivers/serial.py), so a request that may have gone out is counted.
            self.requests_sent += 1
            self._port.write(request.encode(self.encoding) + self.terminator)
            return self._read_line().decode(self.encoding, errors="replace").strip()
        except DriverError:
            self._quiet_at = time.monotonic() + self.timeout_s  # its reply may be on its way
            raise
        except (serial.SerialException, OSError) as exc:
            self.close()  # reopened on the next request
            self._quiet_at = time.monotonic() + self.timeout_s
            raise DriverError(f"serial link {self.url} failed: {exc}", retryable=True) from None

    def quiet_left_s(self) -> float:
        """How long the next request must still wait after a failed one (0 when none).

        The caller waits it out before `exchange`, where a cancelled wait sends nothing;
        what arrives meanwhile is dropped by reset_input_buffer.
        """
        return max(0.0, self._quiet_at - time.monotonic())

    def _read_line(self) -> bytes:
        buffer = bytearray()
        deadline = time.monotonic() + self.timeout_s
        while True:
            chunk = self._port.read(max(1, min(self._port.in_waiting, self.max_line_bytes)))
            buffer += chunk
            end = buffer.find(self.terminator)
            if end >= 0:
                return bytes(buffer[:end])
            if len(buffer) > self.max_line_bytes:
                self._port.reset_input_buffer()
                raise DriverError(
                    f"serial link {self.url}: reply longer than {self.max_line_bytes} bytes "
                    "without a line end",
                    retryable=True,
                    details={"bytes_discarded": len(buffer)},
                )
            if time.monotonic() > deadline:
                raise DriverError(
                    f"serial link {self.url}: no complete reply within {self.timeout_s}s",
                    retryable=True,
                    details={"partial": bytes(buffer[:64]).hex()},
                )
