"""Driver registry names, and the builtin ops (shell only when allowed)."""

from __future__ import annotations

import asyncio
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from waiting import wait_until_async

from tme.drivers import registry
from tme.drivers.base import Driver
from tme.drivers.builtin import OUTPUT_LIMIT, run_builtin
from tme.drivers.registry import create_driver
from tme.errors import ConfigError, DriverError, EnvelopeViolation, UnknownName


def test_unknown_driver_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownName, match="did you mean 'modbus_tcp'"):
        create_driver("modbus_tpc", host="127.0.0.1")


def test_known_drivers_are_built_lazily_and_not_connected() -> None:
    driver = create_driver("modbus_tcp", host="127.0.0.1", port=1502)
    assert isinstance(driver, Driver)
    assert driver.bus_key == "tcp:127.0.0.1:1502"
    assert create_driver("serial", port="loop://").bus_key == "serial:loop://"


def test_bad_connection_settings_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="modbus_tcp"):
        create_driver("modbus_tcp", hots="127.0.0.1")


@pytest.mark.parametrize("path", ["tme_no_such_plugin.drivers:factory", "tme.drivers:nothing"])
def test_a_plugin_that_cannot_be_loaded_is_a_config_error(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "known_drivers", lambda: {"acme_plc": path})
    with pytest.raises(ConfigError, match=f"driver 'acme_plc' \\({path}\\) cannot be loaded"):
        create_driver("acme_plc", host="10.0.0.5")


async def test_noop_and_sleep() -> None:
    assert await run_builtin("noop", {}) == {"ok": True}
    assert (await run_builtin("sleep", {"seconds": 0}))["slept_s"] >= 0


async def test_sleep_is_cancellable() -> None:
    task = asyncio.create_task(run_builtin("sleep", {"seconds": 60}))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_shell_refused_unless_allowed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(EnvelopeViolation):
        await run_builtin("shell", {}, f"touch {marker}", allow_shell=False)
    assert not marker.exists()
    result = await run_builtin("shell", {}, f"touch {marker}; echo hi", allow_shell=True)
    assert marker.exists()
    assert result["exit_code"] == 0 and result["stdout"] == "hi\n"


async def test_shell_timeout_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with pytest.raises(DriverError, match="timed out"):
        await run_builtin(
            "shell", {}, f"echo $$ > {pid_file}; exec sleep 60", allow_shell=True, timeout_s=0.5
        )
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_unknown_builtin_op() -> None:
    with pytest.raises(UnknownName):
        await run_builtin("reboot", {})


async def test_shell_output_is_bounded_while_it_is_read() -> None:
    """Only OUTPUT_LIMIT bytes per pipe are kept in memory, not the whole output."""
    total = 32 * 1024 * 1024
    tracemalloc.start()
    try:
        result = await run_builtin(
            "shell",
            {},
            f"head -c {total} /dev/zero; head -c {total} /dev/zero >&2",
            allow_shell=True,
            timeout_s=60,
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert len(result["stdout"]) == len(result["stderr"]) == OUTPUT_LIMIT
    assert result["stdout_dropped_bytes"] == result["stderr_dropped_bytes"] == total - OUTPUT_LIMIT


@pytest.fixture
def agent_stdin_open() -> Iterator[int]:
    """The agent's stdin as a pipe that stays open with nothing in it (a terminal where
    nobody types); yields the write end, and puts the real stdin back afterwards."""
    read_end, write_end = os.pipe()
    saved = os.dup(0)
    os.dup2(read_end, 0)
    os.close(read_end)
    try:
        yield write_end
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(write_end)


async def test_a_shell_command_does_not_read_the_agents_stdin(agent_stdin_open: int) -> None:
    """A command that reads its input (a prompt, `cat`) gets end of input at once: it does
    not wait on the agent's terminal until its timeout, nor take what is typed there."""
    os.write(agent_stdin_open, b"typed at the agent's terminal\n")
    result = await run_builtin("shell", {}, "cat; echo done", allow_shell=True, timeout_s=5)
    assert result["stdout"] == "done\n"


@pytest.mark.parametrize(
    ("name", "settings", "field"),
    [
        ("modbus_tcp", {"host": "127.0.0.1", "retries": -1}, "retries"),
        ("modbus_tcp", {"host": "127.0.0.1", "timeout_s": 0}, "timeout_s"),
        ("modbus_rtu", {"port": "/dev/ttyUSB0", "timeout_s": -1.0}, "timeout_s"),
        ("serial", {"port": "loop://", "timeout_s": 0}, "timeout_s"),
        ("serial", {"port": "loop://", "max_line_bytes": 0}, "max_line_bytes"),
    ],
)
def test_connection_settings_out_of_range_are_a_config_error(
    name: str, settings: dict, field: str
) -> None:
    """Caught when the agent starts, not as a crash (retries=-1 made every read fail
    with UnboundLocalError) or a bus that can never answer in time."""
    with pytest.raises(ConfigError, match=field):
        create_driver(name, **settings)


async def test_shell_timeout_kills_the_commands_children_too(tmp_path: Path) -> None:
    """A timed-out command's children (here a background sleep of sh) die with it:
    no orphan keeps running on the agent's machine."""
    pid_file = tmp_path / "child"
    shell = run_builtin(
        "shell", {}, f"sleep 600 & echo $! > {pid_file}; wait", allow_shell=True, timeout_s=0.5
    )
    with pytest.raises(DriverError, match="timed out"):
        await asyncio.wait_for(shell, 10)  # a surviving child would hold its pipes open
    # SIGKILL to the group is delivered asynchronously: on a loaded machine the child
    # can still be on its way out when the shell's end is seen; it must be gone soon.
    child = int(pid_file.read_text())
    await wait_until_async(lambda: not _alive(child), timeout=5, what="the child killed")


def _alive(pid: int) -> bool:
    """Whether a process runs (an orphan's zombie, left unreaped by a container's
    init, has died: state Z)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in {"Z", "X"}
