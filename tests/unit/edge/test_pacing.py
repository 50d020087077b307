"""When the agent last changed a point with a min_interval_s: kept across restarts of
the agent, timed on the monotonic clock within a boot and on the wall clock across one."""

from __future__ import annotations

from pathlib import Path

import pytest
from clocks import Clocks

from tme.agents.pacing import PointChanges
from tme.errors import ConfigError


def test_the_time_since_a_change_counts_from_when_it_was_noted(tmp_path: Path) -> None:
    clocks = Clocks()
    changes = PointChanges(tmp_path / "changes.sqlite3", clocks.clock())
    assert changes.since_s("pump1", "run") is None  # never changed by this agent
    changes.note("pump1", "run")
    clocks.advance(42)
    assert changes.since_s("pump1", "run") == 42
    assert changes.since_s("pump2", "run") is None  # per device and point


def test_a_change_is_remembered_by_the_next_process(tmp_path: Path) -> None:
    """An agent restarted a second after it started a pump still knows."""
    clocks = Clocks()
    path = tmp_path / "changes.sqlite3"
    first = PointChanges(path, clocks.clock())
    first.note("pump1", "run")
    first.close()
    clocks.advance(1)
    again = PointChanges(path, clocks.clock())
    assert again.since_s("pump1", "run") == 1


def test_within_one_boot_a_wall_clock_step_does_not_count(tmp_path: Path) -> None:
    clocks = Clocks()
    path = tmp_path / "changes.sqlite3"
    PointChanges(path, clocks.clock()).note("pump1", "run")
    clocks.advance(10)
    clocks.wall += 3600  # NTP or an operator sets the clock an hour on
    assert PointChanges(path, clocks.clock()).since_s("pump1", "run") == 10


def test_after_a_reboot_the_wall_clock_counts(tmp_path: Path) -> None:
    clocks = Clocks()
    path = tmp_path / "changes.sqlite3"
    PointChanges(path, clocks.clock(boot="boot-1")).note("pump1", "run")
    clocks.wall += 120
    clocks.mono = 3.0  # the monotonic clock starts again at boot
    assert PointChanges(path, clocks.clock(boot="boot-2")).since_s("pump1", "run") == 120


def test_a_change_later_than_the_clock_counts_as_made_now(tmp_path: Path) -> None:
    """A device without a battery-backed clock comes up at 1970: the pump waits one
    interval from now, not until the clock reaches the change nor not at all."""
    clocks = Clocks()
    path = tmp_path / "changes.sqlite3"
    PointChanges(path, clocks.clock(boot="boot-1")).note("pump1", "run")
    clocks.wall, clocks.mono = 0.0, 3.0
    changes = PointChanges(path, clocks.clock(boot="boot-2"))
    assert changes.since_s("pump1", "run") == 0
    clocks.advance(30)
    assert changes.since_s("pump1", "run") == 30


def test_an_undone_change_leaves_the_one_before(tmp_path: Path) -> None:
    clocks = Clocks()
    changes = PointChanges(tmp_path / "changes.sqlite3", clocks.clock())
    assert changes.note("pump1", "run") is None
    clocks.advance(100)
    before = changes.note("pump1", "run")
    changes.undo("pump1", "run", before)  # its write was never sent
    assert changes.since_s("pump1", "run") == 100
    changes.undo("pump1", "run", None)
    assert changes.since_s("pump1", "run") is None


def test_a_state_dir_that_is_a_file_is_said_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")
    with pytest.raises(ConfigError, match="the agent's record of point changes"):
        PointChanges(tmp_path / "state" / "changes.sqlite3")
