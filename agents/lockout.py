"""Lockout: a device taken out of TME's hands at its agent, while people work on the machine.

Someone at the machine runs `tme agent lock --config agent.yaml DEVICE --reason TEXT`.
From then on the agent refuses every command that could change the device (a Modbus
write, a serial command that is not read-only) with the lockout's reason, before a
frame is sent, whoever asked and however long the command was queued; reads still
run, so the machine can be watched. Only `tme agent unlock` at the agent ends it: the
controller can neither set nor lift a lockout (the person at the machine holds it).
The agent says which devices are locked out in its presence, so the API, the CLI and
the dashboard show it, and a task created for a locked-out device gets a warning.

A lockout is one file per device in the agent's state directory
(`state_dir/lockout/<device>.json`), written atomically. The agent reads it again just
before each command that could change the device (holding the device's bus, right
before the frame): a stat, no copy in memory to go stale, and it holds across restarts
of the agent. The running agent looks at the directory every POLL_S to tell the
controller of a change.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tme.errors import ConfigError, TMEError

LOCKOUT_DIR = "lockout"
# A device stopped from the controller (op device.stop) is latched the same way, in a
# directory of its own: its changes are refused until a device.resume lifts it.
STOPPED_DIR = "stopped"
POLL_S = 1.0  # how soon a lock or unlock reaches the controller, at most
MAX_REASON = 200  # characters kept of a reason (it goes into every refusal)


@dataclass(frozen=True)
class Lockout:
    device: str
    by: str
    reason: str
    at: str  # ISO 8601, UTC
    kind: str = LOCKOUT_DIR  # or STOPPED_DIR: a stop's latch

    def refusal(self, what: str) -> str:
        """Why a command that could change the device is refused."""
        if self.kind == STOPPED_DIR:
            return (
                f"device {self.device!r} was stopped by {self.by} at {self.at}: {self.reason};"
                f" {what} refused until it is resumed (reads still run; `tme device resume`)"
            )
        return (
            f"device {self.device!r} is locked out by {self.by} since {self.at}: {self.reason}; "
            f"{what} refused (reads still run; `tme agent unlock` at the agent ends it)"
        )

    def public(self) -> dict[str, str]:
        """What presence says of it."""
        return {"by": self.by, "reason": self.reason, "at": self.at}


class Lockouts:
    """The lockout files of one agent's state directory (with `kind` STOPPED_DIR: its
    stop latches, the same files in a directory of their own)."""

    def __init__(self, state_dir: Path, kind: str = LOCKOUT_DIR) -> None:
        self.kind = kind
        self.dir = Path(state_dir) / kind
        # Each device's file name, checked and joined once: the agent reads the file
        # before every command that could change the device (the name, not the file,
        # is what is kept).
        self._files: dict[str, str] = {}

    def _path(self, device: str) -> Path:
        if not device or "/" in device or device.startswith("."):
            raise ConfigError(f"not a device name: {device!r}")
        return self.dir / f"{device}.json"

    def _file(self, device: str) -> str:
        file = self._files.get(device)
        if file is None:
            file = self._files[device] = str(self._path(device))
        return file

    def get(self, device: str) -> Lockout | None:
        """The device's lockout, read from its file now (None: not locked out)."""
        try:
            with open(self._file(device), "rb") as f:  # JSON as bytes: no text decoder
                data = json.loads(f.read())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            # A lockout file that cannot be read still locks the device out: a damaged
            # lock must not hand the machine back.
            what = f"{self.kind} file unreadable ({exc})"
            return Lockout(device, "unknown", what, "unknown", self.kind)
        return _lockout(device, data, self.kind)

    def all(self) -> dict[str, Lockout]:
        try:
            names = sorted(p.stem for p in self.dir.glob("*.json"))
        except OSError:
            return {}
        found = {name: self.get(name) for name in names}
        return {name: lockout for name, lockout in found.items() if lockout is not None}

    def lock(self, device: str, by: str, reason: str) -> Lockout:
        """Lock the device out (again: a new reason replaces the old)."""
        reason = " ".join(reason.split())[:MAX_REASON]
        if not reason:
            raise ConfigError("a lockout needs a reason (--reason): it is shown with every refusal")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        lockout = Lockout(device, by or "unknown", reason, at, self.kind)
        path = self._path(device)
        with self._writing(device):
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".lock-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump({k: v for k, v in asdict(lockout).items() if k != "kind"}, f)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
            _sync_dir(self.dir)
        return lockout

    def unlock(self, device: str) -> Lockout | None:
        """End the device's lockout; return the one ended (None: it was not locked out)."""
        lockout = self.get(device)
        with self._writing(device):
            try:
                self._path(device).unlink()
            except FileNotFoundError:
                return None
            _sync_dir(self.dir)
        return lockout

    @contextmanager
    def _writing(self, device: str) -> Iterator[None]:
        """A lockout that cannot be written is said in one line (run as the agent's user)."""
        try:
            yield
        except OSError as exc:
            raise TMEError(
                f"cannot change the lockout of {device!r} in {self.dir}: "
                f"{exc.strerror or exc} (run it as the user the agent runs as)"
            ) from exc


def _lockout(device: str, data: Any, kind: str) -> Lockout:
    if not isinstance(data, dict):
        what = f"{kind} file unreadable (not an object)"
        return Lockout(device, "unknown", what, "unknown", kind)
    return Lockout(
        device,
        str(data.get("by") or "unknown"),
        str(data.get("reason") or "no reason given"),
        str(data.get("at") or "unknown"),
        kind,
    )


def _sync_dir(path: Path) -> None:
    """Make a rename or an unlink in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
