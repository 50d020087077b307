"""Run a device agent on its own thread and event loop, for sync callers (tests, the demo)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

from tme.agents.agent import DeviceAgent

START_TIMEOUT_S = 10.0  # starting touches only SQLite and starts drivers/paho in the background


class AgentThread:
    def __init__(self, agent: DeviceAgent) -> None:
        self.agent = agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tme-agent", daemon=True)
        self._started: Future[None] = Future()

    def start(self) -> AgentThread:
        self._thread.start()
        self._started.result(START_TIMEOUT_S)
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.agent.start()
        except BaseException as exc:
            self._started.set_exception(exc)
            return
        self._started.set_result(None)
        try:
            await self._stop.wait()
        finally:
            await self.agent.stop()

    def stop(self, timeout: float = 30.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> AgentThread:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
