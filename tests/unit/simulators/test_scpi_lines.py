"""The simulated power supply reads a line as a SCPI instrument does: several commands
separated by ";" run one after the other, so tests can see what a chained command does."""

from __future__ import annotations

from tme.simulators.scpi import PowerSupply


def test_commands_chained_in_one_line_all_run() -> None:
    supply = PowerSupply()
    assert supply.answer("SOUR:VOLT 12;:OUTP ON;MEAS:VOLT?") == "OK;OK;12.000"
    assert supply.output_on and supply.voltage_setpoint == 12.0


def test_the_first_refused_command_ends_the_line() -> None:
    supply = PowerSupply()
    assert supply.answer("SOUR:VOLT 99;OUTP ON").startswith("ERR out of range")
    assert not supply.output_on
    assert supply.answer("MEAS:VOLT? AUTO") == "0.000"  # a query ignores its parameters
