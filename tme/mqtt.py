"""A small MQTT link over paho-mqtt 2.x, shared by the device agent and the site gateway.

What it adds to paho, and why:
- a persistent session (3.1.1 clean_session=False; 5 clean_start=False plus a session
  expiry), so QoS 1 messages queued while a client was away reach it when it returns;
- `connect_async` + `loop_start`, so a broker that is down at start is retried;
- subscriptions restored in on_connect, because a reconnect may land on a fresh session;
- every callback wrapped: an exception in a paho callback ends paho's loop thread and with
  it every reconnect, silently;
- optional manual acks, so a receiver acks a QoS 1 message only once its effect is durable;
- an explicit offline state on stop, because a graceful DISCONNECT suppresses the will.

Handlers run on paho's thread unless a loop is given, in which case they are handed to
that asyncio loop with `call_soon_threadsafe`. Either way they must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tme.errors import BusError, ConfigError
from tme.failure_log import FailureLog

log = logging.getLogger(__name__)

QOS = 1  # at-least-once on every TME topic; receivers dedup by message id
KEEPALIVE_S = 30  # the broker declares a silent client dead (and sends its will) after 45 s
SESSION_EXPIRY_S = 7 * 24 * 3600  # MQTT 5: keep a client's queued commands for a week away
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 30
ROUTES_REMEMBERED = 4096  # topics whose subscription is remembered

ProtocolName = Literal["3.1.1", "5"]


@dataclass(frozen=True)
class MqttMessage:
    """One received message; `mid`/`qos` are what a manual ack needs."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool


Handler = Callable[[MqttMessage], None]


@dataclass(frozen=True)
class MqttEndpoint:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False  # mqtts://: TLS, the broker's certificate checked


@dataclass(frozen=True)
class TlsFiles:
    """What an mqtts:// link trusts and shows: `ca_file`, the CA bundle that signed the
    broker's certificate (None: the system's); `cert_file` and `key_file`, this
    client's own certificate, for a broker that asks for one (`require_certificate`)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def given(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file))


# scheme://user:<password>@host, as tme.config_errors hides it (which loads pydantic,
# kept out of the agent's process)
_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:).*@")


def parse_mqtt_url(url: str) -> MqttEndpoint:
    """`mqtt[s]://[user[:password]@]host[:port]` -> endpoint: plain MQTT over TCP (port
    1883 by default), or over TLS with `mqtts` (port 8883)."""
    parts = urlsplit(url)
    shown = _PASSWORD_IN_URL.sub(r"\1***@", url)  # an error names the URL, never its password
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ConfigError(
            f"not an MQTT URL (mqtt://host:port, or mqtts:// for TLS): {shown!r}", key="mqtt.url"
        )
    try:
        port = parts.port
    except ValueError:  # not a number, or not 0 to 65535
        message = f"{shown!r}: the port must be a number from 1 to 65535"
        raise ConfigError(message, key="mqtt.url") from None
    tls = parts.scheme == "mqtts"
    return MqttEndpoint(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


class MqttLink:
    """One persistent MQTT connection with a will, restored subscriptions and safe callbacks."""

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        protocol: ProtocolName = "3.1.1",
        manual_ack: bool = False,
        keepalive_s: int = KEEPALIVE_S,
        tls: TlsFiles | None = None,
        session_expiry_s: int = SESSION_EXPIRY_S,
    ) -> None:
        self.endpoint = parse_mqtt_url(url)
        self.tls = tls or TlsFiles()
        self.session_expiry_s = session_expiry_s  # MQTT 5 (3.1.1 sessions never expire)
        if self.tls.given() and not self.endpoint.tls:
            raise ConfigError(
                "TLS files (ca_file, cert_file, key_file) are for an mqtts:// URL; "
                f"the broker's is mqtt://{self.endpoint.host}:{self.endpoint.port}",
                key="mqtt.url",
            )
        self.client_id = client_id
        self.protocol = protocol
        self.keepalive_s = keepalive_s
        self.connected = threading.Event()
        self._subscriptions: dict[str, tuple[Handler, asyncio.AbstractEventLoop | None]] = {}
        self._routes: dict[str, tuple[Handler, asyncio.AbstractEventLoop | None] | None] = {}
        self._on_connect_hooks: list[Callable[[], None]] = []
        self._on_disconnect_hooks: list[Callable[[], None]] = []
        # Up from a CONNACK's success to the connection's loss, both before the hooks run:
        # paho calls on_disconnect before it marks a lost connection as lost.
        self._session_up = threading.Event()
        self._before_connect_hooks: list[Callable[[], None]] = []
        # paho retries a connection that reaches no broker in silence: said once, then a
        # line a minute while it goes on, and once when it connects (paho's thread only)
        self._connect_failures = FailureLog(
            log,
            f"mqtt {client_id}: connecting to {self.endpoint.host}:{self.endpoint.port}",
            meanwhile=f"retrying with backoff up to {RECONNECT_MAX_S} s (is the broker there?)",
        )
        # connections that ended soon after they began (paho's thread only): another
        # process connecting under the same client id knocks this one off each time
        self._short_lived = ShortLived(client_id)
        self._lock = threading.Lock()
        self._started = False
        self._client = self._build_client(
            username or self.endpoint.username, password or self.endpoint.password, manual_ack
        )

    def _build_client(
        self, username: str | None, password: str | None, manual_ack: bool
    ) -> paho.Client:
        v5 = self.protocol == "5"
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=manual_ack,
        )
        if username:
            client.username_pw_set(username, password)
        if self.endpoint.tls:
            self._set_tls(client)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.on_pre_connect = self._guard(self._handle_pre_connect)
        client.on_connect = self._guard(self._handle_connect)
        client.on_connect_fail = self._guard(self._handle_connect_fail)
        client.on_disconnect = self._guard(self._handle_disconnect)
        client.on_message = self._guard(self._handle_message)
        client.on_socket_open = _no_delay
        return client

    def _set_tls(self, client: paho.Client) -> None:
        """TLS with the broker's certificate and host name checked, never skipped; a
        file that cannot be read or used is a ConfigError naming it."""
        import ssl

        tls = self.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca_file)
            if tls.cert_file:
                context.load_cert_chain(tls.cert_file, tls.key_file)
        except (OSError, ssl.SSLError) as exc:
            files = ", ".join(f for f in (tls.ca_file, tls.cert_file, tls.key_file) if f)
            raise ConfigError(
                f"mqtt TLS: cannot use {files or 'the system CA bundle'}: {exc}",
                key="mqtt.ca_file",
            ) from exc
        client.tls_set_context(context)

    # --- set-up (before start) ------------------------------------------------

    def set_will(self, topic: str, payload: bytes, retain: bool = True) -> None:
        """The message the broker publishes if this client vanishes without DISCONNECT."""
        self._client.will_set(topic, payload, qos=QOS, retain=retain)

    def subscribe(
        self, topic: str, handler: Handler, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Deliver messages on `topic` to handler (on `loop` if given); kept across reconnects."""
        with self._lock:
            self._subscriptions[topic] = (handler, loop)
            self._routes.clear()
        if self.connected.is_set():
            self._client.subscribe(topic, qos=QOS)

    def before_connect(self, hook: Callable[[], None]) -> None:
        """Call hook (on paho's thread, must not block) before every connection attempt,
        the first included: what it sets with `set_will` goes in that attempt's CONNECT."""
        self._before_connect_hooks.append(hook)

    def on_connected(self, hook: Callable[[], None]) -> None:
        """Call hook (on paho's thread, must not block) after every successful (re)connect."""
        self._on_connect_hooks.append(hook)

    def on_disconnected(self, hook: Callable[[], None]) -> None:
        """Call hook (on paho's thread, must not block) after every lost connection; the
        link says it is not connected from then on."""
        self._on_disconnect_hooks.append(hook)

    # --- life cycle -----------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; a broker that is down is retried until stop."""
        kwargs: dict[str, Any] = {}
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self._client.connect_async(
            self.endpoint.host, self.endpoint.port, keepalive=self.keepalive_s, **kwargs
        )
        self._client.loop_start()
        self._started = True

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def is_connected(self) -> bool:
        """Whether the session is up right now: true from the broker's CONNACK on (so
        already inside an on_connected hook, where `connected` is not set yet), false
        from a lost connection on, inside on_disconnected hooks too. While false, a
        publish only waits in paho's memory."""
        return self._session_up.is_set() and self._client.is_connected()

    def stop(self, final: tuple[str, bytes] | None = None, timeout: float = 5.0) -> None:
        """Publish `final` (topic, payload; retained) if connected, then disconnect cleanly."""
        if not self._started:
            return
        if final is not None and self.connected.is_set():
            info = self._client.publish(final[0], final[1], qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt %s: final state not published: %s", self.client_id, exc)
        self.connected.clear()  # before DISCONNECT, so on_disconnect does not warn
        self._session_up.clear()
        self._client.disconnect()
        self._client.loop_stop()
        self._started = False

    # --- traffic --------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> paho.MQTTMessageInfo:
        """Queue a QoS 1 publish (paho keeps it in memory while disconnected: a sender
        that would repeat itself during an outage checks `is_connected` first)."""
        info = self._client.publish(topic, payload, qos=QOS, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            raise BusError(f"mqtt publish to {topic} refused: {paho.error_string(info.rc)}")
        return info

    def publish_wait(
        self, topic: str, payload: bytes, timeout: float, retain: bool = False
    ) -> bool:
        """Publish and wait for the broker's PUBACK; False when it did not come in time."""
        info = self.publish(topic, payload, retain=retain)
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def ack(self, message: MqttMessage) -> None:
        """Acknowledge a message received with manual acks (no-op for QoS 0)."""
        if message.qos > 0:
            self._client.ack(message.mid, message.qos)

    # --- paho callbacks (paho's thread) -----------------------------------------

    def _guard(self, callback: Callable[..., None]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            try:
                callback(*args)
            except Exception:
                log.exception("mqtt %s: callback %s failed", self.client_id, callback.__name__)

        return guarded

    def _handle_pre_connect(self, _client: paho.Client, _ud: Any) -> None:
        for hook in self._before_connect_hooks:
            self._guard(hook)()

    def _handle_connect_fail(self, _client: paho.Client, _ud: Any) -> None:
        # called inside paho's `except OSError`: the error is the one being handled; its
        # frames are paho's socket code, of no use to whoever reads the log
        handled = sys.exc_info()[1]
        error = handled.with_traceback(None) if handled else ConnectionError("no answer")
        self._connect_failures.failed(error)

    def _handle_connect(
        self, client: paho.Client, _ud: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connect_failures.passed()
        if reason.is_failure:
            log.warning("mqtt %s: connect refused: %s", self.client_id, reason)
            return
        with self._lock:
            topics = list(self._subscriptions)
        for topic in topics:
            client.subscribe(topic, qos=QOS)
        self._session_up.set()
        self._short_lived.began()
        for hook in self._on_connect_hooks:  # before `connected`: a stop must come after these
            self._guard(hook)()
        self.connected.set()
        log.info("mqtt %s: connected to %s", self.client_id, self.endpoint.host)

    def _handle_disconnect(self, *args: Any) -> None:
        was_up = self._session_up.is_set()
        self._session_up.clear()
        if self.connected.is_set():
            log.warning("mqtt %s: disconnected; reconnecting", self.client_id)
            reason = args[3] if len(args) > 3 else None
            self._short_lived.ended(taken_over=getattr(reason, "value", None) == TAKEN_OVER)
        self.connected.clear()
        if was_up:  # a failed connection attempt lost nothing
            for hook in self._on_disconnect_hooks:
                self._guard(hook)()

    def _handle_message(self, _client: paho.Client, _ud: Any, msg: paho.MQTTMessage) -> None:
        message = MqttMessage(msg.topic, bytes(msg.payload), msg.qos, msg.mid, bool(msg.retain))
        target = self._route(msg.topic)
        if target is None:
            log.warning("mqtt %s: message on unexpected topic %s", self.client_id, msg.topic)
            self.ack(message)
            return
        handler, loop = target
        if loop is None:
            handler(message)
        else:
            loop.call_soon_threadsafe(self._guard(handler), message)

    def _route(self, topic: str) -> tuple[Handler, asyncio.AbstractEventLoop | None] | None:
        """The subscription a topic matches; remembered per topic (matching a pattern costs
        more than the rest of taking a message), forgotten when subscriptions change."""
        with self._lock:
            if topic in self._routes:
                return self._routes[topic]
            found = None
            for pattern, target in self._subscriptions.items():
                if paho.topic_matches_sub(pattern, topic):
                    found = target
                    break
            if len(self._routes) >= ROUTES_REMEMBERED:  # topics are open-ended: stay bounded
                self._routes.clear()
            self._routes[topic] = found
            return found


TAKEN_OVER = 0x8E  # MQTT 5's DISCONNECT reason: another connection took the session
SHORT_S = 10.0  # a connection lost this soon after it began counts as short-lived
SHORT_WINDOW_S = 120.0  # three of them within this long look like a takeover
SAY_EVERY_S = 600.0


class ShortLived:
    """Says when connections keep ending soon after they begin, as when two processes
    connect under one client id (an agent of the same site and name on two hosts, two
    gateways of one name): the broker drops the older one each time the other connects,
    and both reconnect for ever. MQTT 5 says so itself (reason 0x8E)."""

    def __init__(self, client_id: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.client_id = client_id
        self.clock = clock
        self._began = 0.0
        self._ends: deque[float] = deque()
        self._said_at: float | None = None

    def began(self) -> None:
        self._began = self.clock()

    def ended(self, taken_over: bool = False) -> None:
        now = self.clock()
        if now - self._began < SHORT_S:
            self._ends.append(now)
        while self._ends and self._ends[0] < now - SHORT_WINDOW_S:
            self._ends.popleft()
        if not (taken_over or len(self._ends) >= 3):
            return
        if self._said_at is not None and now - self._said_at < SAY_EVERY_S:
            return
        self._said_at = now
        seen = (
            "the broker says another connection took over its session"
            if taken_over
            else f"its connection ended {len(self._ends)} times within {SHORT_WINDOW_S:g} s,"
            f" each less than {SHORT_S:g} s after it began"
        )
        log.error(
            "mqtt %s: %s: another process is probably connecting with the same client id"
            " (an agent of the same site and name on another host, or a second gateway"
            " without a --name of its own); each connection knocks the other off",
            self.client_id,
            seen,
        )


def _no_delay(_client: Any, _userdata: Any, sock: Any) -> None:
    """Send small packets at once (TCP_NODELAY). With Nagle's algorithm a PUBLISH
    written while this side's previous packet (a PUBACK, say) is still unacknowledged
    waits for the broker's delayed ACK, about 40 ms on Linux, on every event."""
    with contextlib.suppress(OSError, AttributeError):  # a websocket wrapper has no options
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
