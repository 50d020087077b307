"""The `builtin` driver: the Driver face of `run_builtin`, so the agent treats every op alike."""

from __future__ import annotations

from typing import Any

from tme.drivers.builtin import run_builtin


class BuiltinDriver:
    """No bus; `allow_shell` comes from the agent's config, never from a task."""

    bus_key = "builtin"

    def __init__(self, allow_shell: bool = False) -> None:
        self.allow_shell = allow_shell

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def run(
        self,
        op: str,
        params: dict[str, Any],
        cmd: str | list[str] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        return await run_builtin(op, params, cmd, allow_shell=self.allow_shell, timeout_s=timeout_s)
