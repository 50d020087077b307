"""Anti-short-cycle: when the agent last changed each point with a `min_interval_s`.

A motor or compressor is damaged by starting too often, so a profile point may say how
long must pass between two changes of it (`run: {..., min_interval_s: 300}`). The agent
refuses a change that comes sooner (tme.drivers.envelope.check_interval, called with
the interlocks in tme.agents.interlocks), before any frame is sent. Writing the value
the point already holds is no change. Writing its safe value (a stop) is never refused
and always counts as one: a pump stopped a second ago is not started again at once.

The time of each change is written before the write goes out (like a command's
`started`), to a SQLite file in the agent's state directory, so an agent restarted a
second after starting a pump still knows. A change whose write is known not to have
been sent (its connection could not be opened) is taken back.

Clocks: each change keeps the wall-clock time, the monotonic clock's and the id of
the boot it was made in. Within one boot (the agent restarted, the machine not) the
time since is measured on the monotonic clock, which a wall-clock step (NTP, an
operator setting the time) does not move. After a reboot only the wall clock is
comparable. A change that looks later than now (the clock was set back, or a device
without a battery-backed clock came up at 1970) is counted as made now: the wait is at
most one interval too long, never too short. A wall clock set forward across a reboot
shortens the wait by as much: nothing at the edge can tell.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tme.agents.checks import STOP_OP, Plan
from tme.agents.state_files import opening

if TYPE_CHECKING:
    from tme.drivers.profile import PointSpec

CHANGES_FILE = "changes.sqlite3"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # Linux; elsewhere: wall clock only

_SCHEMA = """
CREATE TABLE IF NOT EXISTS changes (
    device TEXT NOT NULL,
    point TEXT NOT NULL,
    wall REAL NOT NULL,
    mono REAL NOT NULL,
    boot TEXT NOT NULL,
    PRIMARY KEY (device, point)
)
"""


def boot_id() -> str:
    """This boot's id ("" where the system does not give one)."""
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Clock:
    """The clocks a change is timed by (a test gives its own)."""

    wall: Callable[[], float] = time.time
    mono: Callable[[], float] = time.monotonic
    boot: str = field(default_factory=boot_id)


@dataclass(frozen=True)
class Change:
    wall: float  # time.time() when it was made: what a reboot leaves comparable
    mono: float  # time.monotonic() then: comparable within the same boot
    boot: str  # that boot's id ("": unknown)


class PointChanges:
    """The last change of each paced point, one SQLite file (None: in memory, for an
    executor built without an agent); used from the agent's event-loop thread."""

    def __init__(self, path: Path | None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        if path is None:
            self._db = sqlite3.connect(":memory:", isolation_level=None)
        else:
            with opening(path, "the agent's record of point changes"):
                path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(path), isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                # a change lost in a power cut would let the pump start again at once
                self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def last(self, device: str, point: str) -> Change | None:
        row = self._db.execute(
            "SELECT wall, mono, boot FROM changes WHERE device = ? AND point = ?",
            (device, point),
        ).fetchone()
        return Change(*row) if row is not None else None

    def since_s(self, device: str, point: str) -> float | None:
        """Seconds since the agent last changed the point (None: it never did)."""
        change = self.last(device, point)
        if change is None:
            return None
        if change.boot and change.boot == self.clock.boot:
            since = self.clock.mono() - change.mono
        else:
            since = self.clock.wall() - change.wall
        if since < 0:  # later than now: the wall clock went back past it
            self.note(device, point)
            return 0.0
        return since

    def note(self, device: str, point: str) -> Change | None:
        """Record a change of the point now; return the one it replaces (for `undo`)."""
        before = self.last(device, point)
        now = Change(self.clock.wall(), self.clock.mono(), self.clock.boot)
        self._put(device, point, now)
        return before

    def undo(self, device: str, point: str, before: Change | None) -> None:
        """Take back a change noted whose write was not sent."""
        if before is None:
            self._db.execute("DELETE FROM changes WHERE device = ? AND point = ?", (device, point))
        else:
            self._put(device, point, before)

    def _put(self, device: str, point: str, change: Change) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO changes (device, point, wall, mono, boot)"
            " VALUES (?, ?, ?, ?, ?)",
            (device, point, change.wall, change.mono, change.boot),
        )


def paced_spec(plan: Plan) -> PointSpec | None:
    """The spec of the point a write plan writes, when it has a min_interval_s."""
    if plan.device is None or plan.command.op != "modbus.write":
        return None
    spec = plan.device.profile.points.get(str(plan.command.params.get("point")))
    return spec if spec is not None and spec.min_interval_s is not None else None


def paced_points(plan: Plan) -> frozenset[str]:
    """The points with a min_interval_s that the plan writes: a write's point, or the
    points a stop writes its safe values to."""
    device = plan.device
    if device is None:
        return frozenset()
    if plan.command.op == STOP_OP:
        return frozenset(
            name
            for name, spec in device.profile.points.items()
            if spec.min_interval_s is not None and spec.safe_value is not None
        )
    return frozenset([str(plan.command.params["point"])]) if paced_spec(plan) else frozenset()
