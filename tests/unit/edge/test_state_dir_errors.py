"""An agent or gateway whose state directory cannot hold its files stops with one line."""

from __future__ import annotations

import os
from pathlib import Path

from cli_lines import failing_tme
from ports import free_port
from python_module import run_module

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import load_agent_config


def test_an_agent_whose_state_dir_is_a_file_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a directory")
    (tmp_path / "agent.yaml").write_text(
        "site: s1\nagent: a1\nmqtt: mqtt://127.0.0.1:1\nstate_dir: taken\ndevices: {}\n"
    )
    code, line = failing_tme(["agent", "--config", "agent.yaml"], tmp_path)
    assert code == 1
    assert line.startswith("error: cannot open the agent's")
    assert "taken/agent.lock: taken is a file, not a directory" in line


def test_an_agent_whose_record_is_not_a_database_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "commands.sqlite3").write_text("garbage " * 100)
    (tmp_path / "agent.yaml").write_text(
        "site: s1\nagent: a1\nmqtt: mqtt://127.0.0.1:1\nstate_dir: state\ndevices: {}\n"
    )
    code, line = failing_tme(["agent", "--config", "agent.yaml"], tmp_path)
    assert code == 1
    assert "commands.sqlite3" in line and "not a database" in line


def test_a_gateway_whose_state_dir_is_a_file_says_so_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a directory")
    args = ["gateway", "--site", "s1", "--state-dir", "taken", "--mqtt", "mqtt://127.0.0.1:1"]
    code, line = failing_tme(args, tmp_path, TME_BROKER__URL="memory://")
    assert code == 1
    assert line.startswith("error: cannot open the gateway's")  # its lock file, the first
    assert "taken/gateway.lock: taken is a file, not a directory" in line


def test_the_small_agent_entry_point_says_a_config_mistake_in_one_line(tmp_path: Path) -> None:
    """`python -m tme.agents` (the agent without the CLI) stopped with a ConfigError
    traceback for every mistake in its config."""
    (tmp_path / "p.yaml").write_text("name: p\npoints: {}\n")
    (tmp_path / "agent.yaml").write_text(
        "site: s1\nagent: a1\nmqtt: mqtt://127.0.0.1:1\ndevices:\n"
        "  p: {driver: modbus_tpc, connection: {port: 1}, profile: p.yaml}\n"
    )
    for config in (tmp_path / "missing.yaml", tmp_path / "agent.yaml"):
        done = run_module("tme.agents", "--config", str(config), timeout=60)
        assert done.returncode == 1, done.stderr
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "unknown driver 'modbus_tpc'; did you mean 'modbus_tcp'?" in lines[0]


async def test_a_second_agent_on_one_state_dir_is_refused_in_one_line(tmp_path: Path) -> None:
    """Two agent processes on one record (an agent started by hand beside its service)
    each took the other's commands: one answered a command the other was running
    "failed: outcome unknown: the agent stopped while it was running", and both could
    run one command. The record is what keeps a command from running twice: one
    process holds it."""
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"site: s1\nagent: a1\nmqtt: mqtt://127.0.0.1:{free_port()}\nstate_dir: st\ndevices: {{}}\n"
    )
    first = DeviceAgent(load_agent_config(config))
    await first.start()
    try:
        code, line = failing_tme(["agent", "--config", "agent.yaml"], tmp_path)
    finally:
        await first.stop()
    assert code == 1
    assert line.startswith(f"error: another agent (process {os.getpid()}) uses the state")
    assert "uses the state directory st: one agent process per state directory" in line
    second = DeviceAgent(load_agent_config(config))
    await second.start()  # the first one stopped: its state directory is free again
    await second.stop()
