"""Clocks a test moves by hand, for what the agent times (tme.agents.pacing)."""

from __future__ import annotations

from dataclasses import dataclass

from tme.agents.pacing import Clock


@dataclass
class Clocks:
    """A wall clock and a monotonic clock that move only when the test says."""

    wall: float = 1_800_000_000.0
    mono: float = 5_000.0

    def clock(self, boot: str = "boot-1") -> Clock:
        return Clock(wall=lambda: self.wall, mono=lambda: self.mono, boot=boot)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds
