"""The simulated instrument's behaviour: a bench power supply answering SCPI-like lines.

Pure logic, no I/O: `answer(line)` returns the reply line. Every request gets
exactly one reply ("OK" for a setting) so a refused command is never silent.

As on a SCPI instrument, one line may hold several commands separated by ";", each
may start with ":" (back to the root; every header here is a full path anyway), and
their replies come back in one line joined by ";". The first refused command ends
the line: its error is the reply, and the commands after it do not run.
"""

from __future__ import annotations

from dataclasses import dataclass

IDENTITY = "TME,SIM-PSU,0001,1.0"
MAX_VOLTAGE = 30.0
AMBIENT_C = 25.0
HEATING_C_PER_V = 0.5  # the probe sits on the output stage: it warms with the voltage


@dataclass
class PowerSupply:
    voltage_setpoint: float = 0.0
    output_on: bool = False

    def answer(self, line: str) -> str:
        replies = []
        for unit in line.split(";"):
            reply = self._answer_one(unit.strip().removeprefix(":"))
            if reply.startswith("ERR"):
                return reply
            replies.append(reply)
        return ";".join(replies)

    def _answer_one(self, command: str) -> str:
        words = command.split()
        if not words:
            return "ERR empty command"
        head, args = words[0].upper(), words[1:]
        handler = {
            "*IDN?": self._identify,
            "MEAS:VOLT?": self._measure_voltage,
            "MEAS:TEMP?": self._measure_temperature,
            "SOUR:VOLT?": self._setpoint,
            "SOUR:VOLT": self._set_voltage,
            "OUTP": self._set_output,
        }.get(head)
        if handler is None:
            return f"ERR unknown command {words[0]}"
        return handler(args)

    def _identify(self, _args: list[str]) -> str:
        return IDENTITY

    @property
    def output_voltage(self) -> float:
        return self.voltage_setpoint if self.output_on else 0.0

    def _measure_voltage(self, _args: list[str]) -> str:
        return f"{self.output_voltage:.3f}"

    def _measure_temperature(self, _args: list[str]) -> str:
        return f"{AMBIENT_C + HEATING_C_PER_V * self.output_voltage:.2f}"

    def _setpoint(self, _args: list[str]) -> str:
        return f"{self.voltage_setpoint:.3f}"

    def _set_voltage(self, args: list[str]) -> str:
        if len(args) != 1:
            return "ERR SOUR:VOLT takes one value"
        try:
            value = float(args[0])
        except ValueError:
            return f"ERR not a number: {args[0]}"
        if not 0.0 <= value <= MAX_VOLTAGE:
            return f"ERR out of range 0..{MAX_VOLTAGE:g}: {args[0]}"
        self.voltage_setpoint = value
        return "OK"

    def _set_output(self, args: list[str]) -> str:
        if len(args) != 1 or args[0].upper() not in {"ON", "OFF"}:
            return "ERR OUTP takes ON or OFF"
        self.output_on = args[0].upper() == "ON"
        return "OK"
