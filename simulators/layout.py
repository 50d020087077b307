"""The simulated plant's register map; configs/profiles/{pump,tank,conveyor}.yaml describe it.

Unit ids: pump 1, tank 2, conveyor 3. Each device has separate coil, discrete
input, holding and input register blocks starting at address 0; an address
outside a block answers with exception 2 (illegal data address), as a real
device would.
"""

from __future__ import annotations

from pymodbus.simulator import DataType, SimData

PUMP, TANK, CONVEYOR = 1, 2, 3
UNITS = (PUMP, TANK, CONVEYOR)

# (coils, discrete inputs, holding registers, input registers) sizes per unit
BLOCK_SIZES = {
    PUMP: (1, 2, 1, 5),
    TANK: (1, 2, 2, 4),
    CONVEYOR: (1, 1, 5, 4),
}

PUMP_MAX_RPM = 3000
PUMP_MAX_FLOW_M3H = 30.0  # flow at full speed: fills the 10 m3 tank in 20 minutes
PUMP_RAMP_RPM_S = 1500  # the drive reaches full speed in 2 s
TANK_CAPACITY_L = 10_000.0
TANK_OUTLET_L_S = 8.0  # outflow with the valve fully open
TANK_INITIAL_L = 5_000.0
TANK_LOW_PERMILLE = 100  # low-level alarm below 10 %
TANK_TEMPERATURE_DECI_C = 215
CONVEYOR_ITEM_PITCH_MM = 500  # one item passes every 500 mm of belt


def device_blocks(unit: int) -> tuple[list[SimData], list[SimData], list[SimData], list[SimData]]:
    """Build the four SimData blocks of one unit, all zero."""
    coils, inputs, holding, registers = BLOCK_SIZES[unit]
    return (
        [SimData(0, count=coils, values=False, datatype=DataType.BITS)],
        [SimData(0, count=inputs, values=False, datatype=DataType.BITS)],
        [SimData(0, count=holding, values=0, datatype=DataType.REGISTERS)],
        [SimData(0, count=registers, values=0, datatype=DataType.REGISTERS)],
    )
