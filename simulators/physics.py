"""Simple plant physics: pump speed ramps, the tank fills and drains, the belt moves.

The physics reads what clients wrote (setpoints, coils) from the simulator's
memory and writes back what sensors would show. Fractional quantities (volume,
belt position, run time) are kept as floats here so small time steps do not
round away.
"""

from __future__ import annotations

from tme.simulators import layout as L
from tme.simulators.memory import PlantMemory

COIL, DI, HR, IR = "coil", "discrete_input", "holding_register", "input_register"


class PlantPhysics:
    """State of the plant between two steps; `step` advances it by `dt` seconds."""

    def __init__(self, memory: PlantMemory) -> None:
        self.memory = memory
        self.speed_rpm = 0.0
        self.run_time_s = 0.0
        self.volume_l = L.TANK_INITIAL_L
        self.position_mm = 0.0
        self.travelled_mm = 0.0

    def reset(self) -> None:
        """Write the initial state: tank half full, high-level alarm at 90 %."""
        m = self.memory
        m.set_value(L.TANK, HR, 1, 900, "int16")
        m.set_value(L.TANK, IR, 3, L.TANK_TEMPERATURE_DECI_C, "int16")
        self._publish_tank()

    def step(self, dt: float) -> None:
        self._step_pump(dt)
        self._step_tank(dt)
        self._step_conveyor(dt)

    def _step_pump(self, dt: float) -> None:
        m = self.memory
        target = m.get_value(L.PUMP, HR, 0) if m.get_bit(L.PUMP, COIL, 0) else 0
        target = min(float(target), L.PUMP_MAX_RPM)
        change = max(-L.PUMP_RAMP_RPM_S * dt, min(L.PUMP_RAMP_RPM_S * dt, target - self.speed_rpm))
        self.speed_rpm += change
        if self.speed_rpm > 0:
            self.run_time_s += dt
        m.set_value(L.PUMP, IR, 0, round(self.speed_rpm))
        m.set_value(L.PUMP, IR, 1, self.flow_m3h, "float32")
        m.set_value(L.PUMP, IR, 3, int(self.run_time_s), "uint32", "little")
        m.set_bit(L.PUMP, DI, 0, self.speed_rpm > 0)

    @property
    def flow_m3h(self) -> float:
        return self.speed_rpm / L.PUMP_MAX_RPM * L.PUMP_MAX_FLOW_M3H

    def _step_tank(self, dt: float) -> None:
        inflow_l_s = self.flow_m3h * 1000 / 3600
        valve = min(float(self.memory.get_value(L.TANK, HR, 0)), 100.0)
        outflow_l_s = valve / 100 * L.TANK_OUTLET_L_S
        volume = self.volume_l + (inflow_l_s - outflow_l_s) * dt
        self.volume_l = max(0.0, min(L.TANK_CAPACITY_L, volume))
        self._publish_tank()

    def _publish_tank(self) -> None:
        m = self.memory
        permille = round(self.volume_l / L.TANK_CAPACITY_L * 1000)
        m.set_value(L.TANK, IR, 0, permille)
        m.set_value(L.TANK, IR, 1, self.volume_l, "float32", "little")
        m.set_bit(L.TANK, DI, 0, permille >= m.get_value(L.TANK, HR, 1, "int16"))
        m.set_bit(L.TANK, DI, 1, permille < L.TANK_LOW_PERMILLE)

    def _step_conveyor(self, dt: float) -> None:
        m = self.memory
        enabled = m.get_bit(L.CONVEYOR, COIL, 0)
        speed = float(m.get_value(L.CONVEYOR, HR, 0, "int16")) if enabled else 0.0
        self.position_mm += speed * dt
        self.travelled_mm += abs(speed) * dt
        items = int(self.travelled_mm // L.CONVEYOR_ITEM_PITCH_MM)
        m.set_value(L.CONVEYOR, IR, 0, round(self.position_mm), "int32")
        m.set_value(L.CONVEYOR, IR, 2, items % 2**32, "uint32", "little")
        m.set_bit(L.CONVEYOR, DI, 0, speed != 0)
