"""A shell command that exits with a code other than 0 fails its run, saying the code and
the end of what it wrote to stderr, its output kept in the result. It was reported
`succeeded` (with `ok: false` in the result), so its `failure` dependents were skipped,
its `success` ones ran, and its retries never came."""

from __future__ import annotations

from pathlib import Path

from commands import make_command

from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet
from tme.agents.executor import CommandExecutor
from tme.protocol import Event


async def _run_shell(tmp_path: Path, cmd: str) -> Event:
    record = CommandRecord(tmp_path / "r.sqlite3")
    try:
        executor = CommandExecutor(
            record, DeviceSet(), lambda _event: None, worker_count=1, allow_shell=True
        )
        command = make_command("s1", "a1", "shell", cmd=cmd)
        record.add(command)
        final = await executor.execute(command)
    finally:
        record.close()
    assert final is not None
    return final


async def test_a_shell_command_that_exits_non_zero_fails_its_run(tmp_path: Path) -> None:
    final = await _run_shell(tmp_path, "echo half done; echo 'valve 3 stuck' >&2; exit 3")
    assert final.type == "failed" and not final.not_started
    assert final.reason == "shell command exited with code 3: valve 3 stuck"
    assert final.result is not None
    assert final.result["exit_code"] == 3 and final.result["stdout"] == "half done\n"


async def test_a_shell_command_that_exits_zero_succeeds(tmp_path: Path) -> None:
    final = await _run_shell(tmp_path, "echo fine")
    assert final.type == "succeeded"
    assert final.result is not None and final.result["ok"] and final.result["stdout"] == "fine\n"
