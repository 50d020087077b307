"""The simulated serial instrument, served over TCP (for socket:// URLs) or a pty.

Faults: `mode = "silent"` never answers (the driver must time out) and
`mode = "spew"` answers with bytes and no line end (the driver's buffer must
stay bounded). `reply_delay_s` makes a slow instrument (over socket:// only): it
takes that long over each request, one after the other, as a real one does.
`requests` records every line that reached the instrument.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

from tme.simulators.ptybridge import open_raw_pty
from tme.simulators.scpi import PowerSupply
from tme.simulators.threaded import running_in_thread

Mode = Literal["normal", "silent", "spew"]
MAX_REQUEST_BYTES = 1024  # the instrument's own line buffer; longer input is dropped
SPEW_BYTES = 16 * 1024  # how much junk a "spew" reply sends, without any line end


class SerialInstrument:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pty: bool = False,
        terminator: bytes = b"\n",
    ) -> None:
        self.host, self.port, self.use_pty = host, port, pty
        self.terminator = terminator  # ends each request and reply line
        self.device = PowerSupply()
        self.mode: Mode = "normal"
        self.reply_delay_s = 0.0
        self.requests: list[str] = []
        self.url = ""
        self._server: asyncio.Server | None = None
        self._pty: tuple[int, int, str] | None = None
        self._buffer = bytearray()
        self._clients: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        if self.use_pty:
            self._pty = open_raw_pty()
            asyncio.get_running_loop().add_reader(self._pty[0], self._on_pty_readable)
            self.url = self._pty[2]
            return
        self._server = await asyncio.start_server(self._serve_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"socket://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()
            await self._server.wait_closed()
            self._server = None
        if self._pty is not None:
            master, slave, _ = self._pty
            asyncio.get_running_loop().remove_reader(master)
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)
            self._pty = None

    @classmethod
    @contextlib.contextmanager
    def run_in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[SerialInstrument]:
        with running_in_thread(cls(*args, **kwargs), name="tme-instrument-sim") as sim:
            yield sim

    def reply_to(self, line: bytes) -> bytes | None:
        """The bytes to send back for one request line (None: stay silent)."""
        text = line.decode("ascii", errors="replace").strip()
        self.requests.append(text)
        if self.mode == "silent":
            return None
        if self.mode == "spew":
            return b"#" * SPEW_BYTES
        return self.device.answer(text).encode("ascii") + self.terminator

    def _take_lines(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines = []
        while (end := self._buffer.find(self.terminator)) >= 0:
            lines.append(bytes(self._buffer[:end]))
            del self._buffer[: end + len(self.terminator)]
        if len(self._buffer) > MAX_REQUEST_BYTES:
            self._buffer.clear()
        return lines

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._clients.add(writer)
        try:
            while data := await reader.read(4096):
                for line in self._take_lines(data):
                    if self.reply_delay_s:
                        await asyncio.sleep(self.reply_delay_s)  # busy with this request
                    if (reply := self.reply_to(line)) is not None:
                        writer.write(reply)
                        await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass  # the client went away, or the instrument is stopping
        finally:
            self._clients.discard(writer)
            writer.close()

    def _on_pty_readable(self) -> None:
        assert self._pty is not None
        master = self._pty[0]
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, OSError):
            return
        for line in self._take_lines(data):
            if (reply := self.reply_to(line)) is not None:
                # a pty buffers a few KiB; what does not fit is lost, as on a real line
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(master, reply)
