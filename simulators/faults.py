"""Faults a test (or `tme sim modbus --fault ...`) injects into the simulated plant.

A fault matches requests by unit, table and address (None matches any) and
makes the device answer with a Modbus exception code, answer late, or drop
the connection without answering. Tests and the server loop may run in
different threads, hence the lock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

# Function code -> table, as the simulator's action hook sees the request.
FUNCTION_TABLES = {
    1: "coil",
    5: "coil",
    15: "coil",
    2: "discrete_input",
    3: "holding_register",
    6: "holding_register",
    16: "holding_register",
    23: "holding_register",
    4: "input_register",
}


@dataclass
class Fault:
    unit: int | None = None
    table: str | None = None
    address: int | None = None
    exception: int | None = None  # Modbus exception code to answer with (e.g. 2, 4, 6)
    delay_s: float = 0.0  # answer this late (longer than the client's timeout = no answer in time)
    drop: bool = False  # close every client connection instead of answering; nothing applied
    remaining: int | None = None  # how many requests it still applies to; None = until cleared

    def matches(self, unit: int, table: str, address: int, count: int) -> bool:
        if self.unit is not None and self.unit != unit:
            return False
        if self.table is not None and self.table != table:
            return False
        return self.address is None or address <= self.address < address + count


class FaultBook:
    """The active faults; `take` returns the fault for a request and counts it down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, unit: int, function_code: int, address: int, count: int) -> Fault | None:
        table = FUNCTION_TABLES.get(function_code, "")
        with self._lock:
            for fault in self._faults:
                if fault.matches(unit, table, address, count):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None
