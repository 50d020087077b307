"""Two pseudo-terminals joined back to back: a serial cable without hardware or socat.

A device simulator opens one end (`device_path`), the driver under test opens
the other (`client_path`), and bytes are relayed between the two masters on
the running event loop. Closing the bridge is unplugging the cable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import tty

READ_CHUNK = 4096


def open_raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode (no echo, no line editing): returns master, slave fd, slave path."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    return master, slave, os.ttyname(slave)


class PtyBridge:
    def __init__(self) -> None:
        self._ends: list[tuple[int, int, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def device_path(self) -> str:
        return self._ends[0][2]

    @property
    def client_path(self) -> str:
        return self._ends[1][2]

    def open(self) -> None:
        """Create both ptys and start relaying on the running loop."""
        self._loop = asyncio.get_running_loop()
        # The slave fds stay open here so a master never reads EIO while an end is unopened.
        self._ends = [open_raw_pty(), open_raw_pty()]
        (a, _, _), (b, _, _) = self._ends
        self._loop.add_reader(a, self._relay, a, b)
        self._loop.add_reader(b, self._relay, b, a)

    def _relay(self, source: int, target: int) -> None:
        try:
            data = os.read(source, READ_CHUNK)
            os.write(target, data)
        except BlockingIOError:
            return
        except OSError:
            # the far side went away: stop relaying this direction rather than spin
            if self._loop is not None:
                self._loop.remove_reader(source)

    def close(self) -> None:
        for master, slave, _ in self._ends:
            if self._loop is not None:
                self._loop.remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ends = []
