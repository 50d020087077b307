"""The site gateway: the bridge between a site's RabbitMQ queue and its agents' MQTT topics.

Commands: bus consumer -> journal (durable) -> return, which acks RabbitMQ -> the
dispatcher sends them on (see command_dispatch). While the journal cannot be written
(a disk full, its file locked by another process, an I/O error) the batch is held,
unacked, and the write tried again until it works (tme.bus.holding): returned to
RabbitMQ instead, the commands came back within milliseconds, failed again, and were
dead-lettered within seconds by the site queue's delivery limit, never run, nothing
wrong with them. Events and presence: MQTT -> bus with confirms -> MQTT ack (see
event_forwarder). A restart of RabbitMQ, the MQTT broker or the gateway loses no
command: the journal re-offers whatever no agent has answered, and agents dedup by
command id.

By default a gateway declares the topology it uses (exchanges, its site's queue,
the controller's events queue), so a laptop or a fresh broker needs no set-up.
With `declare_topology=False` it declares nothing, so its RabbitMQ user needs no
configure permission (scripts/rabbitmq-users.sh): it waits for the controller to
declare its site's queue (see site_queue), and retries events until the
controller's queue takes them.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.command_dispatch import RESEND_AFTER_S, CommandDispatcher, event_routing_key
from tme.agents.event_forwarder import EventForwarder
from tme.agents.heartbeat import HEARTBEAT_S, Heartbeat
from tme.agents.journal import KEEP_CLOSED_S, Journal
from tme.agents.presence import PresenceAnnouncer
from tme.agents.site_queue import SiteQueueConsumer
from tme.agents.state_files import StateDirLock
from tme.agents.upstream import Upstream
from tme.bus import Bus, Consumer, Delivery, Reject, open_bus
from tme.bus.base import Unreachable, WatchesLinks
from tme.bus.holding import HeldWrite
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.errors import BusError
from tme.failure_log import FailureLog
from tme.mqtt import KEEPALIVE_S, SESSION_EXPIRY_S, MqttLink, ProtocolName, TlsFiles
from tme.protocol import (
    EVENT_BATCHES,
    EVENTS_EXCHANGE,
    Command,
    Event,
    GatewayStatus,
    ProtocolError,
    site_queue,
)

if TYPE_CHECKING:  # pydantic loads on the first command, for the API's name rule
    from pydantic import TypeAdapter

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
# A journal write that failed is tried again after a pause doubling from the first to
# the second, with the batch held: each try already waits the journal's busy timeout
# for a lock, and a disk that stays full costs one try every 10 s.
JOURNAL_RETRY_MIN_S = 0.5
JOURNAL_RETRY_MAX_S = 10.0
# How long a stop lets the bus publisher finish the batch in hand before the bus is
# stopped under it: a confirm takes milliseconds when RabbitMQ answers.
PUBLISHER_STOP_WAIT_S = 2.0


@dataclass(frozen=True)
class GatewayConfig:
    site: str
    bus_url: str
    mqtt_url: str
    state_dir: Path
    name: str = "gateway"
    mqtt_protocol: ProtocolName = "3.1.1"
    # Its MQTT login (mqtt.username, mqtt.password or password_file), also beside a
    # mqtt_url without credentials; None: those of the URL, if any.
    mqtt_username: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    mqtt_keepalive_s: int = KEEPALIVE_S
    # An mqtts:// URL's CA bundle and the gateway's own certificate (tme.mqtt.TlsFiles).
    mqtt_tls: TlsFiles | None = None
    mqtt_session_expiry_s: int = SESSION_EXPIRY_S  # MQTT 5: the broker keeps it this long
    resend_after_s: float = RESEND_AFTER_S
    # False: declare nothing on RabbitMQ (a least-privilege user); the controller does.
    declare_topology: bool = True
    # The controller's events queue and its binding (its broker.events_queue and
    # broker.events_binding), declared so events wait for a controller not started yet.
    # Another name than the controller's would leave a queue filling up unread.
    events_queue: str = CONTROLLER_EVENTS_QUEUE
    events_binding: str = "#"
    # Options of the bus the gateway opens (tme.bus.options.BusOptions; the CLI gives
    # settings.broker.bus_options()). Its site queue's consumer takes `prefetch`
    # commands at most; declare_topology is the field above.
    bus_options: Mapping[str, Any] = field(default_factory=dict)
    # How often it tells the controller it is alive and how it does (agents/heartbeat).
    heartbeat_s: float = HEARTBEAT_S
    # How long a closed journal entry is kept once its command can no longer run.
    journal_keep_s: float = KEEP_CLOSED_S


class Gateway:
    def __init__(self, config: GatewayConfig, bus: Bus | None = None) -> None:
        self.config = config
        options = {**config.bus_options, "declare_topology": config.declare_topology}
        self.bus = bus if bus is not None else open_bus(config.bus_url, **options)
        self.link = MqttLink(
            config.mqtt_url,
            f"tme-gw-{config.site}-{config.name}",
            username=config.mqtt_username,
            password=config.mqtt_password,
            protocol=config.mqtt_protocol,
            manual_ack=True,
            keepalive_s=config.mqtt_keepalive_s,
            tls=config.mqtt_tls,
            session_expiry_s=config.mqtt_session_expiry_s,
        )
        self.presence = PresenceAnnouncer(
            self.link, config.site, config.name, "gateway", features=[EVENT_BATCHES]
        )
        # Whether it reaches RabbitMQ, said in its presence (agents stop devices by it).
        self.upstream = Upstream(self.presence.set_upstream)
        self.journal: Journal | None = None
        self.journal_failures = FailureLog(
            log,
            "journaling commands",
            meanwhile="the journal cannot be written: commands are held, unacked, "
            "until it can be (RabbitMQ's consumer_timeout takes them back after 30 min)",
            on_change=self._state_changed,
        )
        self._journal_hold = HeldWrite(
            self.journal_failures,
            _journal_failed,
            pause_min_s=JOURNAL_RETRY_MIN_S,
            pause_max_s=JOURNAL_RETRY_MAX_S,
        )
        self._consumer: Consumer | None = None
        self._site_queue: SiteQueueConsumer | None = None
        self._publisher: BusPublisher | None = None
        self._dispatcher: CommandDispatcher | None = None
        self.heartbeat: Heartbeat | None = None
        # Two gateways on one journal would each send, expire and close the other's
        # commands: one gateway process per state directory.
        self._state_lock = StateDirLock(config.state_dir, "gateway")

    def start(self) -> None:
        self._state_lock.acquire()  # before the journal: one gateway per journal
        try:
            self._start()
        except BaseException:
            self._state_lock.release()  # a start that failed holds nothing
            raise

    def _start(self) -> None:
        site = self.config.site
        self.journal = Journal(self.config.state_dir / JOURNAL_FILE, self.config.journal_keep_s)
        self.journal.prune()
        # Agents that stop devices on link loss read in its presence whether it reaches
        # RabbitMQ: not until its first publish (the heartbeat, at once) is confirmed,
        # and not while one of its connections is lost.
        self.presence.set_upstream(False)
        if isinstance(self.bus, WatchesLinks):
            self.bus.watch_links(self.upstream.link_changed)
        self._start_bus()
        self._publisher = BusPublisher(self.bus, on_link=self.upstream.published)
        self.heartbeat = Heartbeat(
            site, self.config.name, self._publisher, self.status, self.config.heartbeat_s
        )
        self._dispatcher = CommandDispatcher(
            site,
            self.journal,
            self._publisher,
            self._send_command,
            self.config.resend_after_s,
            connected=self.link.is_connected,
        )
        forwarder = EventForwarder(
            site, self.journal, self._publisher, self._dispatcher, self.link.ack
        )
        self.presence.install()
        self.link.on_connected(self._dispatcher.resend_all)
        # MQTT up or down is what an operator looks at first: told now, not at the next beat
        self.link.on_connected(self._state_changed)
        self.link.on_disconnected(self._state_changed)
        self.link.subscribe(f"tme/v1/{site}/+/evt", forwarder.on_event)
        self.link.subscribe(f"tme/v1/{site}/+/state", forwarder.on_presence)
        self._publisher.start()
        self._dispatcher.start()
        self.link.start()
        if self.config.declare_topology:
            self._consumer = self.bus.consume_batch(site_queue(site), self._on_commands)
        else:
            self._site_queue = SiteQueueConsumer(
                self.bus, site_queue(site), self._on_commands, on_consuming=self._state_changed
            )
            self._site_queue.start()
        self.heartbeat.start()
        log.info("gateway %s of site %s started", self.config.name, site)

    @property
    def consuming(self) -> bool:
        """Whether the gateway consumes its site's queue (it may still wait for it)."""
        if self._site_queue is not None:
            return self._site_queue.consuming.is_set()
        return self._consumer is not None

    def _state_changed(self) -> None:
        """Something the heartbeat says changed (MQTT, the site queue, the journal)."""
        if self.heartbeat is not None:
            self.heartbeat.changed()

    def status(self) -> GatewayStatus:
        """How this gateway does now, as its heartbeat tells the controller."""
        assert self.journal is not None and self._publisher is not None
        try:
            pending, unanswered = self.journal.open_counts()
        except sqlite3.Error:  # the journal cannot be read: said as failing
            pending, unanswered, readable = 0, 0, False
        else:
            readable = True
        return GatewayStatus(
            heartbeat_s=self.config.heartbeat_s,
            mqtt_connected=self.link.is_connected(),
            consuming=self.consuming,
            commands_pending=pending,
            commands_unanswered=unanswered,
            events_waiting=self._publisher.backlog,
            journal_failing=self.journal_failures.failing or not readable,
        )

    def stop(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        self._journal_hold.stop()  # a batch held for the journal is requeued, not waited for
        if self._site_queue is not None:
            self._site_queue.stop()
        if self._consumer is not None:
            self._consumer.stop()
        if self._dispatcher is not None:
            self._dispatcher.stop()
        self.link.stop(final=self.presence.final())
        if self._publisher is not None:
            # What is in hand is normally confirmed within milliseconds; while RabbitMQ
            # does not answer (a heartbeat is nearly always on its way then) only
            # stopping the bus ends its wait for a confirm, up to confirm_timeout_s.
            self._publisher.stop(wait_s=PUBLISHER_STOP_WAIT_S)
        self.bus.stop()
        if self._publisher is not None:
            self._publisher.join()
        if self.journal is not None:
            self.journal.close()
        self._state_lock.release()

    def _start_bus(self) -> None:
        if not self.config.declare_topology:
            # Opened with declare_topology=False, the bus only connects (a bus handed in
            # brings its own options).
            self.bus.start()
            return
        try:
            self.bus.start()
            self.bus.declare_site(self.config.site)
            # Events must have somewhere to go before the controller first runs.
            self.bus.declare_events_queue(self.config.events_queue, self.config.events_binding)
        except BusError as exc:
            if isinstance(exc, Unreachable) or "ACCESS_REFUSED" not in exc.message:
                raise  # a refused login is no permission to configure: no hint for it
            raise BusError(
                f"{exc.message}; a gateway whose RabbitMQ user may not configure the topology "
                "(scripts/rabbitmq-users.sh) needs gateway.declare_topology: false",
                details=exc.details,
            ) from exc

    def _send_command(self, topic: str, payload: bytes) -> None:
        self.link.publish(topic, payload)

    def _on_commands(self, deliveries: list[Delivery]) -> list[Reject | None]:
        """Journal what arrived in one synced write, then return (the bus acks it all);
        anything undecodable, for another site, or whose site or agent is not a valid
        name (it could go on no MQTT topic) is dead-lettered. While the journal cannot
        be written, the batch is held here and the write tried again."""
        assert self.journal is not None and self._dispatcher is not None
        outcomes: list[Reject | None] = []
        commands: list[tuple[Command, bytes]] = []
        for delivery in deliveries:
            try:
                command: Command = Command.from_json(delivery.body)
            except ProtocolError as exc:
                log.warning("dead-lettering a malformed command: %s", exc.message)
                outcomes.append(Reject(exc.message))
                continue
            refusal = self._refusal(command)
            if refusal is not None:
                log.warning("dead-lettering command %s: %s", command.id, refusal)
                outcomes.append(Reject(f"command {command.id}: {refusal}"))
                if command.site == self.config.site:
                    self._report_rejected(command, refusal)
                continue
            outcomes.append(None)
            commands.append((command, delivery.body))
        if commands and any(self._journal(commands)):
            self._dispatcher.wake()
        return outcomes

    def _journal(self, commands: list[tuple[Command, bytes]]) -> list[bool]:
        """Journal the commands (per command, whether it was new), trying again with the
        batch held while the journal cannot be written; raises on stop (requeued)."""
        assert self.journal is not None
        return self._journal_hold.run(functools.partial(self.journal.add_many, commands))

    def _report_rejected(self, command: Command, refusal: str) -> None:
        """Answer a command of this site that no agent can be sent (its agent's name fits
        no topic): rejected with the reason, so its run settles now rather than when the
        controller's watchdog gives up on it. Nothing was sent, so a retry is safe."""
        assert self._publisher is not None
        event = Event(
            command_id=command.id,
            type="rejected",
            site=command.site,
            agent=command.agent,
            source="gateway",
            reason=f"the gateway cannot send it: {refusal}",
            not_started=True,
        )
        key = event_routing_key(self.config.site, self.config.name, "rejected")
        self._publisher.submit(
            Outgoing(EVENTS_EXCHANGE, key, event.to_json(), event.id, pack_site=command.site)
        )

    def _refusal(self, command: Command) -> str | None:
        """Why a decoded command is not for this gateway to journal, or None."""
        for what, name in (("site", command.site), ("agent", command.agent)):
            if not _is_name(name):  # it could go on no topic: it would stall the dispatcher
                return f"invalid {what} name {name!r}"
        if command.site != self.config.site:
            return f"it is for site {command.site!r}"
        return None


def _journal_failed(error: Exception) -> bool:
    """Whether an error is the journal's (its file, its disk, its lock) rather than a
    command's: every SQLite error is, since the commands reaching the write are valid."""
    return isinstance(error, sqlite3.DatabaseError)


@functools.cache
def _name_check() -> TypeAdapter[str]:
    """The API's own rule for site/agent names (tme.schemas.Name), built on first use."""
    from pydantic import TypeAdapter

    from tme.schemas import Name

    return TypeAdapter(Name)


def _is_name(value: str) -> bool:
    """Whether a name is one the API takes: nothing that is invalid in an MQTT topic
    (a wildcard, a separator) or an AMQP routing key reaches the journal."""
    from pydantic import ValidationError

    try:
        _name_check().validate_python(value)
    except ValidationError:
        return False
    return True
