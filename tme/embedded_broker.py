"""An in-process MQTT broker (amqtt, MQTT 3.1.1) for the one-process demo and tests.

It runs on its own thread and event loop so sync code can start and stop it. It
lets anonymous clients in, so it binds to a loopback address only; by default on a
free port, because 1883 is often taken by a real broker on the same machine.
amqtt is an optional extra, imported only by `start`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import threading
from concurrent.futures import Future
from typing import Any

from tme.errors import BusError, ConfigError

log = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0  # amqtt starts in well under a second; this only bounds a hang


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class EmbeddedBroker:
    """`start()` -> serving on `url`; `stop()` -> shut down and thread joined."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not _is_loopback(host):
            raise ConfigError(
                "the embedded MQTT broker admits anonymous clients, so it binds to "
                f"loopback only, not {host!r}",
                key="mqtt.embedded.host",
            )
        self.host = host
        self.port = port or free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        ready: Future[None] = Future()
        thread = threading.Thread(
            target=self._run, args=(loop, ready), name="tme-embedded-mqtt", daemon=True
        )
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            ready.result(START_TIMEOUT_S)
        except Exception as exc:
            self._join()
            raise BusError(f"embedded MQTT broker did not start on {self.url}: {exc}") from exc
        log.info("embedded MQTT broker on %s", self.url)

    def _run(self, loop: asyncio.AbstractEventLoop, ready: Future[None]) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start_broker())
        except Exception as exc:
            ready.set_exception(exc)
            loop.close()
            return
        ready.set_result(None)
        loop.run_forever()
        loop.close()

    async def _start_broker(self) -> None:
        self._broker = _broker_class()(self._config())  # built in its own loop
        await self._broker.start()

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._broker is None or loop.is_closed():
            self._join()
            return
        shutdown = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
        try:
            shutdown.result(START_TIMEOUT_S)
        except Exception as exc:
            log.warning("embedded MQTT broker shutdown: %s", exc)
        loop.call_soon_threadsafe(loop.stop)
        self._join()
        self._broker = None

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(START_TIMEOUT_S)
        self._thread = None
        self._loop = None

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _broker_class() -> Any:
    """amqtt's Broker, keeping retained messages to the client's own subscriptions.

    amqtt (0.12) sends a client that connects the retained messages matching every
    filter any client subscribed to, not only its own: each agent got the others'
    retained presence (the gateway's `+/state` filter) and logged it as unexpected.
    """
    from amqtt.broker import Broker  # optional extra, imported only when started

    class OwnSubscriptionsBroker(Broker):
        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Any
        ) -> None:
            subscribers = self._subscriptions.get(subscription[0], [])
            if any(s.client_id == session.client_id for s, _qos in subscribers):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return OwnSubscriptionsBroker
