"""`tme sim modbus|serial` on a port in use say so in one line, as `tme demo` does, where
the README's `tme sim modbus --port 5020 &` run twice ended in a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_lines import failing_tme
from typer.testing import CliRunner

from tme.cli.main import app


@pytest.mark.parametrize("sim", ["modbus", "serial"])
def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path, sim: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, line = failing_tme(["sim", sim, "--port", str(port)], tmp_path)
    assert code == 1
    assert line.startswith("error: cannot listen on 127.0.0.1:") and f":{port} " in line, line
    assert "stop the other process or pass --port" in line


@pytest.mark.parametrize("sim", ["modbus", "serial"])
def test_an_address_of_no_interface_here_asks_for_another_host(sim: str) -> None:
    # It said "stop the other process or pass --port" of an address this machine lacks
    # (192.0.2.1 is for documentation: no machine has it).
    result = CliRunner().invoke(app, ["sim", sim, "--host", "192.0.2.1", "--port", "0"])
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert line.startswith("error: cannot listen on 192.0.2.1:0 ("), line
    assert line.endswith("): pass --host an address of this machine (127.0.0.1, 0.0.0.0 for all)")


@pytest.mark.parametrize(
    ("rtu", "said"),
    [
        ("bogus://x", "invalid URL, protocol 'bogus' not known"),
        ("/dev/tme-no-such-port", "Could not start listen, please check address."),
    ],
)
def test_an_rtu_link_it_cannot_serve_is_one_line_naming_it(rtu: str, said: str) -> None:
    # It ended in pymodbus's (or pyserial's) traceback, with the TCP server left behind.
    args = ["sim", "modbus", "--port", "0", "--tick-s", "0", "--rtu", rtu]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.strip() == f"error: cannot serve RTU on {rtu!r} (--rtu): {said}"
