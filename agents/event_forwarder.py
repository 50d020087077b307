"""The gateway's return path: agent events and presence from MQTT -> the tme.events exchange.

Runs on paho's thread, so it only checks and hands over: the bus publisher confirms,
then the MQTT message is acked (paho manual ack). Until then the broker keeps it, so a
gateway that dies in between gets it again. A message whose site/agent differs from
the topic it came on (an agent speaking for another) or that does not decode is
logged and dropped (acked), never forwarded; for an agent's EventBatch that holds for
the whole batch when any one of its events fails the check.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TypeVar

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import CommandDispatcher, event_routing_key
from tme.agents.journal import Journal
from tme.mqtt import MqttMessage
from tme.protocol import (
    EVENTS_EXCHANGE,
    FINAL_EVENT_TYPES,
    Event,
    Presence,
    ProtocolError,
    decode_agent_events,
    parse_topic,
)

log = logging.getLogger(__name__)

M = TypeVar("M", Event, Presence)


class EventForwarder:
    def __init__(
        self,
        site: str,
        journal: Journal,
        publisher: BusPublisher,
        dispatcher: CommandDispatcher,
        ack: Callable[[MqttMessage], None],
    ) -> None:
        self.site = site
        self.journal = journal
        self.publisher = publisher
        self.dispatcher = dispatcher
        self.ack = ack

    def on_event(self, message: MqttMessage) -> None:
        """An agent's event, or its EventBatch: each event is checked and forwarded on its
        own (the bus publisher packs them again with the site's others); the MQTT message
        is acked once the broker confirmed all of them."""
        self._never_held(self._on_event, message)

    def on_presence(self, message: MqttMessage) -> None:
        self._never_held(self._on_presence, message)

    def _never_held(self, handle: Callable[[MqttMessage], None], message: MqttMessage) -> None:
        """A message this gateway cannot handle is dropped, and so acked: unacked, it
        would hold one of the few QoS 1 messages the broker lets be in flight to the
        gateway, and a handful would stop every agent's events of the site."""
        try:
            handle(message)
        except Exception as exc:
            log.exception("cannot handle MQTT message on %s", message.topic)
            self._drop(message, f"cannot be handled ({type(exc).__name__})")

    def _on_event(self, message: MqttMessage) -> None:
        try:
            site, agent, kind = parse_topic(message.topic)
            events = decode_agent_events(message.payload)
        except ProtocolError as exc:
            return self._drop(message, f"malformed evt message: {exc.message}")
        for event, _body in events:
            problem = self._misplaced(event, site, agent, kind, "evt", message.topic)
            if problem is None and event.source != "agent":
                problem = f"event {event.id} claims source {event.source!r}"
            if problem is not None:
                return self._drop(message, problem)
        if not events:
            return self.ack(message)
        waiting = [len(events)]

        def confirmed(event: Event) -> None:
            # Only the final answer closes the entry: until it reached the bus the
            # command is offered again (the agent answers a finished one from its
            # record), as the broker may lose an answer it took (a crash between
            # snapshots), or the agent one it never sent (killed).
            if event.type in FINAL_EVENT_TYPES:
                self.journal.close_entry(event.command_id, "done", agent=event.agent)
            waiting[0] -= 1
            if waiting[0] == 0:
                self.ack(message)

        for event, body in events:
            self.publisher.submit(
                Outgoing(
                    EVENTS_EXCHANGE,
                    event_routing_key(event.site, event.agent, event.type),
                    body,
                    event.id,
                    after=functools.partial(confirmed, event),
                    pack_site=event.site,
                    may_wait=event.type not in FINAL_EVENT_TYPES,
                )
            )

    def _on_presence(self, message: MqttMessage) -> None:
        if not message.payload:  # a cleared retained state: nothing to say
            self.ack(message)
            return
        presence = self._decode(message, Presence, "state")
        if presence is None:
            return
        if presence.role == "agent":
            self.dispatcher.agent_presence(presence.agent, presence.state == "online")
        self.publisher.submit(
            Outgoing(
                EVENTS_EXCHANGE,
                event_routing_key(presence.site, presence.agent, "presence"),
                message.payload,
                presence.id,
                after=lambda: self.ack(message),
            )
        )

    def _decode(self, message: MqttMessage, cls: type[M], kind: str) -> M | None:
        try:
            site, agent, topic_kind = parse_topic(message.topic)
            decoded: M = cls.from_json(message.payload)
        except ProtocolError as exc:
            self._drop(message, f"malformed {kind} message: {exc.message}")
            return None
        problem = self._misplaced(decoded, site, agent, topic_kind, kind, message.topic)
        if problem is not None:
            self._drop(message, problem)
            return None
        return decoded

    def _misplaced(
        self,
        decoded: Event | Presence,
        site: str,
        agent: str,
        topic_kind: str,
        kind: str,
        topic: str,
    ) -> str | None:
        """Why a message may not have come on its topic, or None when it may."""
        if topic_kind != kind or (decoded.site, decoded.agent) != (site, agent):
            return f"{kind} for {decoded.site}/{decoded.agent} arrived on {topic}"
        if site != self.site:
            return f"{kind} from another site on {topic}"
        return None

    def _drop(self, message: MqttMessage, why: str) -> None:
        log.warning("dropped MQTT message on %s: %s", message.topic, why)
        self.ack(message)
