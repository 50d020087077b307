"""Direct access to the simulated devices' memory, for the physics and for tests.

pymodbus keeps each SimDevice's registers in plain lists inside the server's
datastore; the plant reads and writes those lists in place, so a value set here
is what the next Modbus request sees, and no request is needed (nor counted)
to inspect the machine. Reading a list element is atomic, so other threads may
read while the server's loop runs.
"""

from __future__ import annotations

from typing import Any, Literal

from tme.drivers.codec import from_registers, to_registers

# pymodbus's block keys for the four tables of a device with separate blocks.
TABLE_KEYS = {"coil": "c", "discrete_input": "d", "holding_register": "h", "input_register": "i"}
WIDTH = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}
WordOrder = Literal["big", "little"]


class PlantMemory:
    """Registers and bits of every unit of one server datastore, by table and address."""

    def __init__(self, datastore: Any) -> None:
        # datastore is pymodbus's SimCore: .devices maps unit id -> runtime with .block
        self._devices = datastore.devices

    def _block(self, unit: int, table: str) -> tuple[int, list[int]]:
        start, _count, registers, _flags = self._devices[unit].block[TABLE_KEYS[table]]
        return start, registers

    def get_registers(self, unit: int, table: str, address: int, count: int = 1) -> list[int]:
        start, registers = self._block(unit, table)
        return list(registers[address - start : address - start + count])

    def set_registers(self, unit: int, table: str, address: int, values: list[int]) -> None:
        start, registers = self._block(unit, table)
        registers[address - start : address - start + len(values)] = values

    def get_bit(self, unit: int, table: str, address: int) -> bool:
        # bit blocks pack 16 bits per register, bit 0 = lowest address (pymodbus's layout)
        start, registers = self._block(unit, table)
        return bool((registers[address // 16 - start] >> (address % 16)) & 1)

    def set_bit(self, unit: int, table: str, address: int, value: bool) -> None:
        start, registers = self._block(unit, table)
        index, mask = address // 16 - start, 1 << (address % 16)
        registers[index] = (registers[index] | mask) if value else (registers[index] & ~mask)

    def get_value(
        self,
        unit: int,
        table: str,
        address: int,
        type_: str = "uint16",
        word_order: WordOrder = "big",
    ) -> float | int:
        regs = self.get_registers(unit, table, address, WIDTH[type_])
        return from_registers(regs, type_, word_order)

    def set_value(
        self,
        unit: int,
        table: str,
        address: int,
        value: float,
        type_: str = "uint16",
        word_order: WordOrder = "big",
    ) -> None:
        self.set_registers(unit, table, address, to_registers(value, type_, word_order))
