"""Operations that need no machine: noop, sleep and (only when allowed) shell.

Each returns a result dict; failures raise `DriverError`. A shell `cmd` given as
text runs through /bin/sh (the task's `cmd` property); given as a list of words
it runs without a shell. Shell is refused unless the agent's config allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

from tme.errors import DriverError, EnvelopeViolation, UnknownName

OUTPUT_LIMIT = 64 * 1024  # bytes of stdout/stderr kept in a result: results travel over MQTT
REASON_STDERR_CHARS = 200  # of the last stderr line, in a failed command's reason
READ_CHUNK = 64 * 1024  # what one pipe read may hold in memory beyond the kept output
BUILTIN_OPS = ("noop", "sleep", "shell")


async def run_builtin(
    op: str,
    params: dict[str, Any],
    cmd: str | list[str] | None = None,
    *,
    allow_shell: bool = False,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    if op == "noop":
        return {"ok": True}
    if op == "sleep":
        return await _sleep(params)
    if op == "shell":
        if not allow_shell:
            raise EnvelopeViolation(
                "shell commands are disabled on this agent", details={"reason": "shell_disabled"}
            )
        return await _shell(cmd if cmd is not None else params.get("cmd"), timeout_s)
    raise UnknownName(f"unknown builtin op {op!r}; known: {', '.join(BUILTIN_OPS)}")


async def _sleep(params: dict[str, Any]) -> dict[str, Any]:
    seconds = params.get("seconds", params.get("duration_s", 0))
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise DriverError(f"sleep needs a non-negative number of seconds, got {seconds!r}")
    started = time.monotonic()
    await asyncio.sleep(seconds)  # the op itself; cancelling the task cancels the sleep
    return {"slept_s": round(time.monotonic() - started, 3)}


async def _shell(cmd: Any, timeout_s: float | None) -> dict[str, Any]:
    if isinstance(cmd, str) and cmd.strip():
        process = await asyncio.create_subprocess_shell(
            cmd,
            stdin=asyncio.subprocess.DEVNULL,  # never the agent's own stdin (a terminal)
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    elif isinstance(cmd, list) and cmd and all(isinstance(part, str) for part in cmd):
        process = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,  # never the agent's own stdin (a terminal)
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    else:
        raise DriverError("shell needs a command (text or list of words) in 'cmd'")
    try:
        (stdout, stdout_dropped), (stderr, stderr_dropped) = await asyncio.wait_for(
            _bounded_output(process), timeout_s
        )
    except (TimeoutError, asyncio.CancelledError):
        await _kill(process)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise DriverError(
            f"shell command timed out after {timeout_s}s and was killed",
            details={"pid": process.pid},
        ) from None
    err = stderr.decode(errors="replace")
    result = {
        "ok": process.returncode == 0,
        "exit_code": process.returncode,
        "stdout": stdout.decode(errors="replace"),
        "stderr": err,
        "stdout_dropped_bytes": stdout_dropped,
        "stderr_dropped_bytes": stderr_dropped,
    }
    if process.returncode != 0:  # the command says it failed: so does its run
        said = [line.strip() for line in err.splitlines() if line.strip()]
        reason = f"shell command exited with code {process.returncode}"
        reason += f": {said[-1][:REASON_STDERR_CHARS]}" if said else ""
        raise DriverError(reason, result=result)
    return result


async def _bounded_output(
    process: asyncio.subprocess.Process,
) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """Read both pipes to their end, each kept up to OUTPUT_LIMIT, then wait for the exit.

    Reading on past the limit keeps the process from blocking on a full pipe.
    """
    kept = await asyncio.gather(_read_bounded(process.stdout), _read_bounded(process.stderr))
    await process.wait()
    return kept


async def _read_bounded(stream: asyncio.StreamReader | None) -> tuple[bytes, int]:
    """The first OUTPUT_LIMIT bytes of a pipe, and how many more were read and dropped."""
    kept = bytearray()
    dropped = 0
    while stream is not None and (chunk := await stream.read(READ_CHUNK)):
        room = OUTPUT_LIMIT - len(kept)
        kept += chunk[:room]
        dropped += max(0, len(chunk) - room)
    return bytes(kept), dropped


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill the whole process group (its own session), so children of sh die too."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
