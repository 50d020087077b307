"""`tme sim modbus --fault`: a fault the simulator cannot apply as written is refused in
one line naming the field, before the plant serves. A value that was not a number
stopped it with a ValueError traceback; an unknown table, an exception code no frame
carries, a negative delay or `remaining=0` were taken silently and the fault never (or
not as written) applied."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tme.cli.main import app


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("unit=x", "unit must be a whole number, got 'x'"),
        ("delay_s=abc", "delay_s must be a number of seconds, got 'abc'"),
        ("table=holding", "table 'holding' is not one of coil, discrete_input, "),
        ("exception=300", "exception must be from 1 to 255, got 300"),
        ("delay_s=-1", "delay_s must be from 0 seconds, got -1"),
        ("remaining=0", "remaining must be from 1, got 0"),
        ("address=70000", "address must be from 0 to 65535, got 70000"),
        ("drop=maybe", "drop must be true or false, got 'maybe'"),
        ("bogus=1", "unknown fault field 'bogus'"),
    ],
)
def test_a_fault_it_cannot_apply_is_refused_in_one_line(fault: str, said: str) -> None:
    result = CliRunner().invoke(app, ["sim", "modbus", "--port", "0", "--fault", fault])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: --fault {fault!r}: ") and said in lines[0], lines[0]
