"""`tme sim modbus|serial` on a port in use say so in one line, as `tme demo` does, where
the README's `tme sim modbus --port 5020 &` run twice ended in a traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_lines import failing_tme


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
