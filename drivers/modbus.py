"""Modbus TCP and RTU drivers over pymodbus's asyncio clients.

Reads and writes go point by point, as the device profile names them. Every
write is checked against the profile here too, even though the agent already
did: a refused write never becomes a frame.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from tme.drivers.base import Value, require_setting, serial_bus_key
from tme.drivers.codec import decode_point, encode_point
from tme.drivers.modbus_errors import from_exception_response, from_library_error
from tme.drivers.profile import BIT_TABLES, DeviceProfile, PointSpec
from tme.errors import DriverError

log = logging.getLogger(__name__)
Client = AsyncModbusTcpClient | AsyncModbusSerialClient
# The guard catches a hang outside pymodbus's own wait of timeout_s (a stuck connect).
GUARD_MARGIN_S = 1.0
# pymodbus answers False both for a refused connection and for one it gave up on after
# timeout_s; a False that took this share of timeout_s or more was the time running out
# (asyncio's timer may fire a clock tick early, hence not all of it).
TIMED_OUT_SHARE = 0.99
# On a serial line unit 0 is the broadcast address (every device takes a write, none
# answers) and 248..255 are reserved; over TCP 0 and 255 often name the device itself.
RTU_UNITS = range(1, 248)
# What one read of a Modbus TCP connection asks the socket for. asyncio's socket
# transport asks for 256 KiB, and the allocator maps and unmaps that much for each
# answer of a dozen bytes (about 13 us of system time a read, two reads a write with
# its read-back); a TCP frame is at most 260 bytes, and a longer read only takes two.
READ_SIZE = 4096
READ_METHODS = {
    "coil": "read_coils",
    "discrete_input": "read_discrete_inputs",
    "input_register": "read_input_registers",
    "holding_register": "read_holding_registers",
}


class ModbusDriver:
    """What TCP and RTU share: a connection, a lock for the wire, error translation.

    pymodbus never repeats a request (its client gets retries=0): a write reaches the
    machine at most once. Reads are retried here, `read_retries` times, on a fresh
    connection. After a timeout or an I/O error the client is closed and dropped, so
    a late reply cannot be taken as the answer to the next request: a new TCP
    connection never sees it, and a serial line is first given `settle_s` to go quiet,
    then reopened (pyserial empties its input buffer on open). RTU frames carry no
    transaction id, so on a serial line that quiet time is the only protection.

    The connection is opened here, before a request (`_connect`), never inside one:
    pymodbus 3.16's client refuses a request while it has no transport ("Not
    connected") rather than connect lazily, and its `connect()` answers False for a
    refused or timed-out connection or a port that cannot be opened. So a connection
    that cannot be opened is a failure before any frame left (`not_sent`), and a write
    that failed so may be retried; any failure once a request was handed to pymodbus
    may have reached the device.
    """

    bus_key: str
    units: range  # the unit ids a device on this bus may have
    request_timeout_s: float

    def __init__(
        self,
        make_client: Callable[[], Client],
        bus_key: str,
        timeout_s: float,
        read_retries: int,
        settle_s: float = 0.0,
        units: range = range(256),
    ) -> None:
        require_setting("timeout_s", timeout_s, low=0.001)
        require_setting("retries", read_retries, low=0, whole=True)
        self.bus_key = bus_key
        self.units = units
        self.request_timeout_s = timeout_s  # see tme.drivers.base.AnswersWithin
        self._make_client = make_client
        self._client: Client | None = None
        self._guard_s = timeout_s + GUARD_MARGIN_S
        self._read_retries = read_retries
        self._settle_s = settle_s
        self._quiet_at = 0.0  # loop time before which a new serial client must not open
        self._lock = asyncio.Lock()
        self._failing = False
        self.requests_sent = 0  # see tme.drivers.base.CountsRequests

    async def start(self) -> None:
        async with self._lock:
            await self._connect()

    async def stop(self) -> None:
        async with self._lock:
            self._drop_client()

    async def _connect(self) -> Client:
        if self._client is None:
            await self._let_line_settle()
            self._client = self._make_client()
        if not self._client.connected:
            await self._open(self._client)
        return self._client

    async def _open(self, client: Client) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        if await client.connect():
            _read_in_small_pieces(client)
            return
        # no request was handed to pymodbus: nothing went out on the wire
        message = f"cannot connect to {self.bus_key}"
        if loop.time() - began >= self.request_timeout_s * TIMED_OUT_SHARE:
            limit = self.request_timeout_s
            message += f": the connection could not be opened within {limit:g} s"
        raise DriverError(message, retryable=True, not_sent=True)

    async def _let_line_settle(self) -> None:
        wait_s = self._quiet_at - asyncio.get_running_loop().time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)  # a late reply still on the line ends in this wait

    def _drop_client(self) -> None:
        """Close the connection; the next request opens a new one with an empty buffer."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _abandon_client(self) -> None:
        """After a request without a usable answer: its reply may still be on its way."""
        self._drop_client()
        self._quiet_at = asyncio.get_running_loop().time() + self._settle_s

    async def _request(
        self, what: str, call: Callable[[Client], Awaitable[Any]], *, retries: int = 0
    ) -> Any:
        """Send one request (and repeat it up to `retries` times if no answer came)."""
        sends = 0  # attempts that may have reached the device
        async with self._lock:
            for attempt in range(retries + 1):
                try:
                    response = await self._exchange(what, call)
                    break
                except DriverError as exc:
                    sends += 0 if exc.not_sent else 1
                    if attempt == retries:
                        if sends > 1:
                            exc.message += f" (sent {sends} times)"
                            exc.args = (exc.message,)
                        self._note_failure(exc)
                        exc.not_sent = sends == 0  # an earlier attempt may have gone out
                        raise
        if response.isError():
            raise from_exception_response(response, what)
        if self._failing:
            log.info("modbus %s answers again", self.bus_key)
            self._failing = False
        return response

    async def _exchange(self, what: str, call: Callable[[Client], Awaitable[Any]]) -> Any:
        sending = False
        try:
            client = await self._connect()
            sending = True
            self.requests_sent += 1
            async with asyncio.timeout(self._guard_s):  # no task per request
                return await call(client)
        except DriverError:
            self._abandon_client()
            raise
        except (ModbusException, OSError, TimeoutError) as exc:
            self._abandon_client()
            raise from_library_error(exc, what, self.request_timeout_s) from None
        except asyncio.CancelledError:
            if sending:
                self._abandon_client()  # cut off mid-request: its reply may still arrive
            else:
                # cut off while connecting or while the line settled: nothing was sent, so
                # the quiet time stands as it was (restarting it, tasks with a shorter
                # timeout would keep a polled line quiet for ever)
                self._drop_client()
            raise

    def _note_failure(self, error: DriverError) -> None:
        # log the start of an outage once, not every failed poll during it
        if not self._failing:
            log.warning("modbus %s failing: %s", self.bus_key, error.message)
        self._failing = True

    async def read_points(
        self, profile: DeviceProfile, unit: int, points: list[str]
    ) -> dict[str, Value]:
        values: dict[str, Value] = {}
        for name in points:
            try:
                values[name] = await self._read(profile.point(name), unit, name)
            except DriverError as exc:
                exc.not_sent = exc.not_sent and not values  # earlier points were read
                raise
        return values

    async def _read(self, spec: PointSpec, unit: int, name: str) -> Value:
        what = f"read {name!r} (unit {unit})"
        method, address = READ_METHODS[spec.table], spec.address
        count = 1 if spec.table in BIT_TABLES else spec.register_count
        # a read changes nothing on the machine, so it may be repeated
        rr = await self._request(
            what,
            lambda c: getattr(c, method)(address, count=count, device_id=unit),
            retries=self._read_retries,
        )
        if spec.table in BIT_TABLES:
            return bool(rr.bits[0])
        return decode_point(spec, list(rr.registers))

    async def write_point(
        self, profile: DeviceProfile, unit: int, point: str, value: Value
    ) -> None:
        accepted = profile.check_write(point, value)  # raises EnvelopeViolation: nothing is sent
        spec = profile.point(point)
        what = f"write {point!r} (unit {unit})"
        address = spec.address
        if spec.table == "coil":
            flag = bool(accepted)
            await self._request(what, lambda c: c.write_coil(address, flag, device_id=unit))
            return
        registers = encode_point(spec, float(accepted))
        # never repeated: a retried write can land after a newer one (see ModbusDriver)
        if len(registers) == 1:
            await self._request(
                what, lambda c: c.write_register(address, registers[0], device_id=unit)
            )
        else:
            await self._request(
                what, lambda c: c.write_registers(address, registers, device_id=unit)
            )


def _read_in_small_pieces(client: Client) -> None:
    """Have the client's socket transport read READ_SIZE bytes at a time (a transport
    without that setting, a serial one, is left as it is)."""
    transport = getattr(getattr(client, "ctx", None), "transport", None)
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = READ_SIZE  # type: ignore[union-attr]


def modbus_tcp(
    host: str, port: int = 502, timeout_s: float = 2.0, retries: int = 1
) -> ModbusDriver:
    """A Modbus TCP driver; `bus_key` is "tcp:HOST:PORT". `retries` repeats reads only."""
    return ModbusDriver(
        lambda: AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=0),
        f"tcp:{host}:{port}",
        timeout_s,
        retries,
    )


def modbus_rtu(
    port: str,
    baudrate: int = 19200,
    parity: str = "N",
    stopbits: int = 1,
    timeout_s: float = 1.0,
    retries: int = 1,
) -> ModbusDriver:
    """A Modbus RTU driver on a serial URL, a pty path or socket://HOST:PORT.

    `retries` repeats reads only. After a request goes unanswered the line gets one
    more timeout_s to go quiet: a reply up to twice the timeout late is discarded.
    """
    return ModbusDriver(
        lambda: AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout_s,
            retries=0,
        ),
        serial_bus_key(port),
        timeout_s,
        retries,
        settle_s=timeout_s,
        units=RTU_UNITS,
    )
