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

from tme.drivers.base import Value
from tme.drivers.codec import decode_point, encode_point
from tme.drivers.modbus_errors import from_exception_response, from_library_error
from tme.drivers.profile import DeviceProfile, PointSpec
from tme.errors import DriverError

log = logging.getLogger(__name__)
Client = AsyncModbusTcpClient | AsyncModbusSerialClient


class ModbusDriver:
    """What TCP and RTU share: a connection, a lock for the wire, error translation."""

    bus_key: str

    def __init__(
        self, make_client: Callable[[], Client], bus_key: str, timeout_s: float, retries: int
    ) -> None:
        self.bus_key = bus_key
        self._make_client = make_client
        self._client: Client | None = None
        # pymodbus waits timeout_s per try; the guard catches a hang outside those waits
        self._guard_s = timeout_s * (retries + 1) + 1.0
        self._lock = asyncio.Lock()
        self._failing = False

    async def start(self) -> None:
        async with self._lock:
            await self._connect()

    async def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _connect(self) -> Client:
        if self._client is None:
            self._client = self._make_client()
        if not self._client.connected and not await self._client.connect():
            raise DriverError(f"cannot connect to {self.bus_key}", retryable=True)
        return self._client

    async def _request(self, what: str, call: Callable[[Client], Awaitable[Any]]) -> Any:
        """Send one request; reconnect first when the link dropped."""
        async with self._lock:
            try:
                client = await self._connect()
                async with asyncio.timeout(self._guard_s):  # no task per request
                    response = await call(client)
            except DriverError as exc:
                self._note_failure(exc)
                raise
            except (ModbusException, OSError, TimeoutError) as exc:
                error = from_library_error(exc, what)
                self._note_failure(error)
                raise error from None
        if response.isError():
            raise from_exception_response(response, what)
        if self._failing:
            log.info("modbus %s answers again", self.bus_key)
            self._failing = False
        return response

    def _note_failure(self, error: DriverError) -> None:
        # log the start of an outage once, not every failed poll during it
        if not self._failing:
            log.warning("modbus %s failing: %s", self.bus_key, error.message)
        self._failing = True

    async def read_points(
        self, profile: DeviceProfile, unit: int, points: list[str]
    ) -> dict[str, Value]:
        return {name: await self._read(profile.point(name), unit, name) for name in points}

    async def _read(self, spec: PointSpec, unit: int, name: str) -> Value:
        what = f"read {name!r} (unit {unit})"
        address, count = spec.address, spec.register_count
        if spec.table == "coil":
            rr = await self._request(what, lambda c: c.read_coils(address, count=1, device_id=unit))
            return bool(rr.bits[0])
        if spec.table == "discrete_input":
            rr = await self._request(
                what, lambda c: c.read_discrete_inputs(address, count=1, device_id=unit)
            )
            return bool(rr.bits[0])
        if spec.table == "input_register":
            rr = await self._request(
                what, lambda c: c.read_input_registers(address, count=count, device_id=unit)
            )
        else:
            rr = await self._request(
                what, lambda c: c.read_holding_registers(address, count=count, device_id=unit)
            )
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
        if len(registers) == 1:
            await self._request(
                what, lambda c: c.write_register(address, registers[0], device_id=unit)
            )
        else:
            await self._request(
                what, lambda c: c.write_registers(address, registers, device_id=unit)
            )


def modbus_tcp(
    host: str, port: int = 502, timeout_s: float = 2.0, retries: int = 1
) -> ModbusDriver:
    """A Modbus TCP driver; `bus_key` is "tcp:HOST:PORT"."""
    return ModbusDriver(
        lambda: AsyncModbusTcpClient(host, port=port, timeout=timeout_s, retries=retries),
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
    """A Modbus RTU driver on a serial URL, a pty path or socket://HOST:PORT."""
    return ModbusDriver(
        lambda: AsyncModbusSerialClient(
            port,
            framer=FramerType.RTU,
            baudrate=baudrate,
            parity=parity,
            stopbits=stopbits,
            timeout=timeout_s,
            retries=retries,
        ),
        f"serial:{port}",
        timeout_s,
        retries,
    )
