"""The simulated plant: pump, tank and conveyor served over Modbus TCP and RTU.

One datastore (pymodbus SimDevice, units 1..3, see `layout`) is shared by a TCP
server and, optionally, an RTU server on `socket://` or on a pty pair, so a
write over one link is read back over the other. Tests inspect the machine
through `memory` / `read_register`, never through TME, and count the requests
that reached it in `requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimDevice

from tme.simulators import layout
from tme.simulators.faults import Fault, FaultBook
from tme.simulators.memory import PlantMemory, WordOrder
from tme.simulators.physics import PlantPhysics
from tme.simulators.ptybridge import PtyBridge
from tme.simulators.threaded import running_in_thread


def _bound_address(server: Any) -> tuple[str, int]:
    # the listening socket of a server started on port 0 tells which port it got
    host, port = server.transport.sockets[0].getsockname()[:2]
    return str(host), int(port)


@dataclass(frozen=True)
class RequestRecord:
    """One request that reached the plant (as decoded by the server)."""

    unit: int
    function_code: int
    address: int
    count: int
    link: str  # "tcp" or "rtu"
    # What a write asked to store (register words or coil bits); () for a read. Tests
    # tell which command wrote by the value, and so count how often each one ran.
    values: tuple[int, ...] = ()

    @property
    def is_write(self) -> bool:
        return self.function_code in {5, 6, 15, 16, 22, 23}


class PlantSimulator:
    """`rtu` is None, "socket://HOST:PORT" (port 0 picks a free one) or "pty"."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rtu: str | None = None,
        tick_s: float | None = 0.1,
    ) -> None:
        self.host, self.port = host, port
        self.rtu, self.rtu_url = rtu, ""
        self.tick_s = tick_s
        self.faults = FaultBook()
        self.requests: list[RequestRecord] = []
        self._servers: list[Any] = []
        self._bridge: PtyBridge | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # None unless serving
        self._loop_thread = 0
        self._pending: set[asyncio.Task[Any]] = set()  # requests a fault holds up
        self._hurry: set[asyncio.Future[None]] = set()  # each held request's "answer now"

    # --- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Listen (returns once accepting connections) and start the physics timer."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        tcp = ModbusTcpServer(
            self._devices(), address=(self.host, self.port), trace_pdu=partial(self._trace, "tcp")
        )
        await self._serve(tcp)
        self.port = _bound_address(tcp)[1]
        self.memory = PlantMemory(tcp.context)
        self.physics = PlantPhysics(self.memory)
        self.physics.reset()
        if self.rtu:
            await self._start_rtu(tcp.context)
        if self.tick_s:
            self._ticker = asyncio.create_task(self._run_physics(self.tick_s))

    async def _start_rtu(self, datastore: Any) -> None:
        port = self.rtu or ""
        if port == "pty":
            self._bridge = PtyBridge()
            self._bridge.open()
            port = self._bridge.device_path
        rtu = ModbusSerialServer(
            self._devices(),
            port=port,
            framer=FramerType.RTU,
            baudrate=115200,
            trace_pdu=partial(self._trace, "rtu"),
        )
        rtu.context = datastore  # one plant behind both links, not two copies
        await self._serve(rtu)
        if self._bridge is not None:
            self.rtu_url = self._bridge.client_path
        else:
            bound = _bound_address(rtu)
            self.rtu_url = f"socket://{bound[0]}:{bound[1]}"

    async def _serve(self, server: Any) -> None:
        await server.serve_forever(background=True)
        self._servers.append(server)

    async def stop(self) -> None:
        """Stop serving. Every part is stopped even if another one fails (the failure is
        raised once all are); afterwards `drop_connections` does nothing (the plant has
        no connections, and its loop may be closed by then)."""
        self._loop = None
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        held = list(self._pending)  # a late answer must not come after the stop
        for request in held:
            request.cancel()
        await asyncio.gather(*held, return_exceptions=True)
        servers, self._servers = self._servers, []
        async with contextlib.AsyncExitStack() as parts:  # each part runs, last first
            if self._bridge is not None:
                parts.callback(self._bridge.close)
            for server in servers:
                parts.push_async_callback(server.shutdown)

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[PlantSimulator]:
        """A plant on its own loop thread, for synchronous code and other loops."""
        with running_in_thread(cls(*args, **kwargs), name="tme-plant-sim") as sim:
            yield sim

    def _devices(self) -> list[SimDevice]:
        return [
            SimDevice(
                id=unit, simdata=layout.device_blocks(unit), action=partial(self._action, unit)
            )
            for unit in layout.UNITS
        ]

    async def _run_physics(self, tick_s: float) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(tick_s)  # the plant's clock, not a synchronisation
            now = loop.time()
            self.physics.step(now - last)
            last = now

    # --- requests and faults ----------------------------------------------------

    def _trace(self, link: str, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if not sending:
            count = getattr(pdu, "count", 0) or len(getattr(pdu, "registers", []) or []) or 1
            record = RequestRecord(
                pdu.dev_id, pdu.function_code, getattr(pdu, "address", 0), count, link
            )
            if record.is_write:
                values = getattr(pdu, "registers", None) or getattr(pdu, "bits", None) or []
                record = dataclasses.replace(record, values=tuple(int(v) for v in values))
            self.requests.append(record)
        return pdu

    async def _action(
        self,
        unit: int,
        function_code: int,
        _start: int,
        address: int,
        count: int,
        _registers: list[int],
        _values: Any,
    ) -> ExcCodes | None:
        fault = self.faults.take(unit, function_code, address, count)
        if fault is None:
            return None
        if fault.delay_s:
            await self._answer_late(fault.delay_s)
        if fault.drop:
            # a device that resets mid-request: nothing is applied and no answer is sent
            # (the exception code only stops pymodbus applying a write; its connection is gone)
            self._drop_now()
            return ExcCodes.DEVICE_FAILURE
        if fault.exception is not None:
            return ExcCodes(fault.exception)
        return None

    async def _answer_late(self, delay_s: float) -> None:
        """The delay fault itself: a device that answers late (after `delay_s`, or when
        `answer_held` says so). The request's task is known until then, so that `stop`
        cancels it instead of leaving it to wake on a stopped plant (or be destroyed
        pending with its loop)."""
        task = asyncio.current_task()
        assert task is not None
        hurry = asyncio.get_running_loop().create_future()
        self._pending.add(task)
        self._hurry.add(hurry)
        try:
            await asyncio.wait({hurry}, timeout=delay_s)
        finally:
            self._pending.discard(task)
            self._hurry.discard(hurry)
            hurry.cancel()

    def answer_held(self) -> None:
        """Let every request a delay fault holds now be answered at once (any thread): a
        test holds a bus with a slow request for as long as it needs, no longer."""
        loop = self._loop
        if loop is None:
            return

        def answer() -> None:
            for hurry in list(self._hurry):
                if not hurry.done():
                    hurry.set_result(None)

        loop.call_soon_threadsafe(answer)

    @property
    def held_requests(self) -> int:
        """How many requests a delay fault holds right now (not yet acted on)."""
        return len(self._pending)

    def inject_fault(self, unit: int | None = None, **fields: Any) -> Fault:
        """Add a fault (see `Fault`); safe to call from any thread."""
        return self.faults.add(Fault(unit=unit, **fields))

    def clear_faults(self) -> None:
        self.faults.clear()

    def drop_connections(self) -> None:
        """Close every client connection now, as a device reboot or a cut cable would.
        A plant not serving (never started, or stopped) has none: nothing happens."""
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._drop_now()
            return
        done = threading.Event()

        def drop_and_signal() -> None:
            try:
                self._drop_now()
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(drop_and_signal)
        except RuntimeError:  # its loop closed meanwhile: stopped, so nothing to drop
            return
        done.wait(5)

    def _drop_now(self) -> None:
        for server in list(self._servers):
            # A server that is shutting down (or a kind that keeps no table of its
            # clients) has no connections to drop.
            connections = getattr(server, "active_connections", None) or {}
            for connection in list(connections.values()):
                connection.close()

    # --- the machine's state, read and set directly -------------------------------

    def read_register(
        self,
        unit: int,
        address: int,
        table: str = "holding_register",
        type_: str = "uint16",
        word_order: WordOrder = "big",
    ) -> float | int:
        return self.memory.get_value(unit, table, address, type_, word_order)

    def write_register(
        self,
        unit: int,
        address: int,
        value: float,
        table: str = "holding_register",
        type_: str = "uint16",
        word_order: WordOrder = "big",
    ) -> None:
        self.memory.set_value(unit, table, address, value, type_, word_order)

    def read_bit(self, unit: int, address: int, table: str = "coil") -> bool:
        return self.memory.get_bit(unit, table, address)

    def write_bit(self, unit: int, address: int, value: bool, table: str = "coil") -> None:
        self.memory.set_bit(unit, table, address, value)

    def writes_to(self, unit: int, address: int) -> list[tuple[int, ...]]:
        """The values of every write that reached `address` of `unit`, in arrival order
        (a write is logged as it arrives, so one the device then refused counts too)."""
        return [
            r.values
            for r in list(self.requests)
            if r.is_write and r.unit == unit and r.address == address
        ]

    def request_count(self, unit: int | None = None, *, writes_only: bool = False) -> int:
        return sum(
            1
            for r in list(self.requests)
            if (unit is None or r.unit == unit) and (r.is_write or not writes_only)
        )
