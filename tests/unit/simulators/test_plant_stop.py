"""Stopping the simulated plant: whatever a test left behind, stop ends it all, and the
plant's helpers do nothing once it stopped (a failed test's clean-up calls them late)."""

from __future__ import annotations

import asyncio
import struct

from waiting import wait_until_async

from tme.simulators.modbus_plant import PlantSimulator

PUMP, SPEED_SETPOINT = 1, 0


def write_register_frame(unit: int, address: int, value: int) -> bytes:
    """A Modbus TCP request: write single register (function 6), transaction 1."""
    return struct.pack(">HHHBBHH", 1, 0, 6, unit, 6, address, value)


async def test_stop_ends_a_request_held_by_a_slow_reply_fault() -> None:
    """A write the plant holds (delay fault) when it stops is ended with it: it never
    lands on a stopped plant, and no task of it is left pending on the loop."""
    sim = PlantSimulator(tick_s=None)
    await sim.start()
    sim.inject_fault(PUMP, table="holding_register", delay_s=30.0, remaining=1)
    _reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    try:
        writer.write(write_register_frame(PUMP, SPEED_SETPOINT, 1234))
        await writer.drain()
        await wait_until_async(lambda: sim.requests, what="the write held at the plant")
        await sim.stop()
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not left, f"tasks left pending by the stopped plant: {left}"
        assert sim.read_register(PUMP, SPEED_SETPOINT) == 0
    finally:
        writer.close()


def test_dropping_connections_of_a_stopped_plant_does_nothing() -> None:
    """Once stopped (its loop closed), the plant has no connections to drop: it used to
    raise RuntimeError('Event loop is closed')."""
    with PlantSimulator.run_in_thread(tick_s=None) as sim:
        sim.drop_connections()  # serving: drops whatever is connected (nothing)
    sim.drop_connections()
