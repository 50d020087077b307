"""The agent's outgoing events: one MQTT message per event, or packed when the gateway can.

Each event costs the agent a QoS 1 publish and its PUBACK, and the gateway a message to
take, check, forward and ack. A quick command's accepted, started and final event come
within a few ms, so while the site's gateway announces EVENT_BATCHES in its presence,
an event that is not final waits up to LINGER_S (50 ms) and the next final event takes
what waits with it, in order, in one EventBatch. A final event never waits (a task's
latency ends on it); an event alone goes as it is. Until the gateway's presence says
it takes batches (an older gateway, or none seen yet), every event goes on its own.

Used on the agent's event loop only.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tme.agents.presence import gateway_of, read_gateway_state
from tme.mqtt import MqttMessage
from tme.protocol import (
    EVENT_BATCHES,
    FINAL_EVENT_TYPES,
    Event,
    Presence,
    pack_events,
)

log = logging.getLogger(__name__)

# How long an event that is not final waits for company. A Modbus write and its
# read-back take a few ms on an idle agent, but tens of ms of wall time on a busy one;
# waiting only 5 ms, half the `started` events of a burst went alone.
LINGER_S = 0.05
PACK_MAX = 100  # events per message
PACK_MAX_BYTES = 64 * 1024  # and bytes: events with long results or log lines go fewer


class EventPacker:
    def __init__(self, site: str, send: Callable[[bytes], None]) -> None:
        self.site = site
        self._send = send
        self.packing = False  # set from the gateways' presence (see set_gateway)
        self._gateways: dict[str, bool] = {}  # each gateway online: whether it takes batches
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._timer: asyncio.TimerHandle | None = None

    def publish(self, event: Event) -> None:
        body = event.to_json()
        if not self.packing:
            self._send(body)
            return
        if self._held and self._held_bytes + len(body) > PACK_MAX_BYTES:
            self.flush()
        self._held.append(body)
        self._held_bytes += len(body)
        if event.type in FINAL_EVENT_TYPES or len(self._held) >= PACK_MAX:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LINGER_S, self.flush)

    def flush(self) -> None:
        """Send what waits: several as one EventBatch, or each as it is when only one
        waits or the gateway no longer takes batches."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        held, self._held, self._held_bytes = self._held, [], 0
        if len(held) > 1 and self.packing:
            self._send(pack_events(self.site, held)[1])
            return
        for body in held:
            self._send(body)

    def on_gateway_state(self, message: MqttMessage) -> None:
        """A gateway's retained presence: pack while one is online and every gateway
        online takes batches."""
        self.set_gateway(gateway_of(message.topic), read_gateway_state(message))

    def set_gateway(self, name: str, presence: Presence | None) -> None:
        """What gateway `name` says now (None: nothing, or nothing readable). Events are
        packed while a gateway is online and every gateway online takes batches (any
        of them may forward them)."""
        online = presence is not None and presence.role == "gateway" and presence.state == "online"
        if online:
            assert presence is not None
            self._gateways[name] = EVENT_BATCHES in presence.features
        else:
            self._gateways.pop(name, None)
        packing = bool(self._gateways) and all(self._gateways.values())
        if packing != self.packing:
            log.info("events to the gateway: %s", "packed" if packing else "one per message")
            self.packing = packing
            self.flush()  # what waits goes now, each on its own when no longer packing
