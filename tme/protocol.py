"""Wire messages between controller, gateway and agent (protocol version 1).

Every message is JSON, frozen and versioned, with a UUID `id` that is also its
idempotency key and UTC timestamps. All correlation travels in the payload, never
only in MQTT 5 properties, so MQTT 3.1.1 (the embedded broker) works the same.

Topics (built in tme.topics, re-exported here) and routing keys are spelled here too,
so no other module spells them.
"""

from __future__ import annotations

import copy
import os
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

import msgspec

from tme.errors import TMEError
from tme.topics import cmd_topic as cmd_topic
from tme.topics import evt_topic as evt_topic
from tme.topics import state_topic as state_topic

PROTOCOL_VERSION = 1

DISPATCH_EXCHANGE = "tme.dispatch"
EVENTS_EXCHANGE = "tme.events"
DEAD_LETTER_EXCHANGE = "tme.dead"


def utcnow() -> datetime:
    return datetime.now(UTC)


# A version 4 UUID's fixed bits (RFC 4122), as uuid.UUID(version=4) sets them.
_V4_KEEP = ~((0xF000 << 64) | (0xC000 << 48))
_V4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A random UUID (version 4) as text: str(uuid.uuid4()), without building the UUID
    object (an agent makes four a command: its events' ids and their batch's)."""
    n = int.from_bytes(os.urandom(16), "big") & _V4_KEEP | _V4_SET
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def site_routing_key(site: str) -> str:
    return f"site.{site}"


def site_queue(site: str) -> str:
    return f"tme.site.{site}"


def parse_topic(topic: str) -> tuple[str, str, str]:
    """Split tme/v1/<site>/<agent>/<kind> into (site, agent, kind)."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "tme" or parts[1] != "v1":
        raise ProtocolError(f"not a TME topic: {topic!r}")
    return parts[2], parts[3], parts[4]


class ProtocolError(TMEError):
    """A message could not be decoded: wrong JSON, version or shape."""

    code = "protocol_error"


# An aware timestamp, ISO 8601 on the wire ("...Z" for UTC); a naive one is refused.
UTCDatetime = Annotated[datetime, msgspec.Meta(tz=True)]

# Bounds of what an agent or gateway may send, checked on decode, so a broken or
# hostile sender's message is refused on its own instead of failing the database
# write of the batch it travels in (and every other agent's events with it).
ID_MAX = 36  # message and command ids are UUIDs; the database keeps 36 characters
NAME_MAX = 64  # sites, agents and devices, as the database keeps them
MAX_LOG_BYTES = 256 * 1024  # a log line event, as the API takes a task's log
MAX_RESULT_DEPTH = 32  # nesting of a result (JSON columns are written recursively)
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX)]
# A task's priority, as the API takes it: 0 (low) .. 9 (high).
DEFAULT_PRIORITY = 5
MAX_PRIORITY = 9
Priority = Annotated[int, msgspec.Meta(ge=0, le=MAX_PRIORITY)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=NAME_MAX)]

_ENCODER = msgspec.json.Encoder()
_DECODERS: dict[type[Message], msgspec.json.Decoder[Any]] = {}


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the wire messages: a frozen msgspec struct, encoded and checked by msgspec.

    Unknown fields are ignored on decode (a newer sender may add some). Decoding is lax
    like pydantic's: "5" for an int and unix seconds for a time are accepted. The
    constructor does not check types; the decoder does, on every hop.
    """

    v: int = PROTOCOL_VERSION
    id: Id = msgspec.field(default_factory=new_id)

    def to_json(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def from_json(cls, data: bytes | str) -> Any:
        try:
            msg = cls._json_decoder().decode(data)
        except msgspec.DecodeError as exc:
            raise ProtocolError(f"malformed {cls.__name__}: {exc}") from exc
        except RecursionError:  # nested deeper than Python's stack: never a message
            raise ProtocolError(f"malformed {cls.__name__}: nested too deep") from None
        return cls._checked(msg)

    @classmethod
    def model_validate(cls, obj: Any) -> Self:
        """A message from a dict of Python values (datetimes or ISO strings), checked."""
        try:
            msg = msgspec.convert(obj, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise ProtocolError(f"malformed {cls.__name__}: {exc}") from exc
        return cls._checked(msg)

    @classmethod
    def _checked(cls, msg: Self) -> Self:
        if msg.v != PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported protocol version {msg.v}")
        return msg

    @classmethod
    def _json_decoder(cls) -> msgspec.json.Decoder[Any]:
        decoder = _DECODERS.get(cls)
        if decoder is None:  # built once per class, on its first decode
            decoder = _DECODERS[cls] = msgspec.json.Decoder(cls, strict=False)
        return decoder

    # pydantic-style names kept for callers written against the earlier pydantic models

    def model_dump_json(self) -> str:
        return self.to_json().decode()

    def model_dump(self, *, mode: Literal["python", "json"] = "python") -> dict[str, Any]:
        """The fields as a dict: Python values (a deep copy), or JSON ones for mode="json"."""
        if mode == "json":
            result: dict[str, Any] = msgspec.to_builtins(self)
            return result
        return copy.deepcopy(msgspec.structs.asdict(self))

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Self:
        """A copy with some fields replaced (not re-checked, as with pydantic)."""
        return msgspec.structs.replace(self, **(update or {}))


class Command(Message, frozen=True, kw_only=True):
    """Do one operation on one agent. `id` is the run id and the command id."""

    kind: Literal["command"] = "command"
    task_id: int
    attempt: int = 1
    site: str
    agent: str
    device: str | None = None
    op: str
    params: dict[str, Any] = msgspec.field(default_factory=dict)
    cmd: str | None = None
    timeout_s: float
    not_after: UTCDatetime  # the agent refuses (expired) a command it receives after this
    created_at: UTCDatetime = msgspec.field(default_factory=utcnow)
    # The run's total deadline, if its task has one: the agent cuts the operation off
    # there when that comes before its timeout (None: the timeout alone).
    deadline: UTCDatetime | None = None
    # Its task's priority: among commands waiting for the same bus or worker, the higher
    # goes first. Added after version 1 with a default, so a command from an older
    # controller still decodes (as 5), and an older agent or gateway ignores it.
    priority: Priority = DEFAULT_PRIORITY


EventType = Literal[
    "delivered",  # gateway journaled it
    "accepted",  # agent checked it and will run it
    "rejected",  # agent refused it (envelope, unknown point or device, op disabled)
    "expired",  # not started before not_after
    "started",
    "progress",
    "log",
    "succeeded",
    "failed",
    "timed_out",
    "stop_requested",
    "canceled",
]

FINAL_EVENT_TYPES = frozenset(
    {"rejected", "expired", "succeeded", "failed", "timed_out", "canceled"}
)


class Event(Message, frozen=True, kw_only=True):
    """Something that happened to a command, reported back to the controller."""

    kind: Literal["event"] = "event"
    command_id: Id
    type: EventType
    site: Name
    agent: Name
    source: Literal["agent", "gateway", "controller"] = "agent"
    at: UTCDatetime = msgspec.field(default_factory=utcnow)
    reason: str = ""
    result: dict[str, Any] | None = None
    line: Annotated[str, msgspec.Meta(max_length=MAX_LOG_BYTES)] | None = None
    progress: float | None = None
    # True when the agent knows the operation never touched the machine, so a retry is safe.
    not_started: bool = False

    @classmethod
    def _checked(cls, msg: Self) -> Self:
        msg = super()._checked(msg)
        if msg.result is not None and deeper_than(msg.result, MAX_RESULT_DEPTH):
            raise ProtocolError(f"event {msg.id}: result nested deeper than {MAX_RESULT_DEPTH}")
        return msg


def deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and mappings in `value` nest deeper than `limit` levels."""
    if limit < 0:
        return True
    if isinstance(value, dict):
        return any(deeper_than(item, limit - 1) for item in value.values())
    if isinstance(value, list):
        return any(deeper_than(item, limit - 1) for item in value)
    return False


# A gateway whose online presence lists this takes EventBatch messages on its agents'
# evt topics, besides single events. An agent packs its events only while its gateway
# says so: an older gateway would drop a batch as malformed.
EVENT_BATCHES = "event_batches"


class GatewayStatus(msgspec.Struct, frozen=True, kw_only=True):
    """How a gateway is doing, in the presence it sends the controller every
    `heartbeat_s` straight over RabbitMQ (tme.agents.heartbeat)."""

    heartbeat_s: Annotated[float, msgspec.Meta(gt=0)]
    mqtt_connected: bool  # to its site's MQTT broker
    consuming: bool  # its site's command queue
    commands_pending: int = 0  # journaled, not sent yet: their agent offline, or MQTT down
    commands_unanswered: int = 0  # sent, no final answer from their agent yet
    events_waiting: int = 0  # events and reports not yet handed to RabbitMQ
    journal_failing: bool = False  # its journal cannot be written: commands wait unacked


class Presence(Message, frozen=True, kw_only=True):
    """An agent or gateway going online or offline (retained on its state topic); with
    `status`, a gateway's heartbeat (never on MQTT)."""

    kind: Literal["presence"] = "presence"
    site: Name
    agent: Name
    role: Literal["agent", "gateway"] = "agent"
    state: Literal["online", "offline"]
    at: UTCDatetime = msgspec.field(default_factory=utcnow)
    devices: list[dict[str, Any]] = msgspec.field(default_factory=list)
    # What this process understands beyond protocol version 1's minimum (EVENT_BATCHES).
    features: list[str] = msgspec.field(default_factory=list)
    status: GatewayStatus | None = None
    # A gateway's, while online: whether it reaches RabbitMQ (its last publish was
    # confirmed). Agents that stop devices on link loss read it; None: not said.
    upstream: bool | None = None


class EventBatch(Message, frozen=True, kw_only=True):
    """Events of one site in one message: what a gateway forwards in one confirm round,
    and what an agent sends on its evt topic to a gateway announcing EVENT_BATCHES.

    Each event keeps its own id, so applying a batch twice changes nothing.
    """

    kind: Literal["events"] = "events"
    site: str
    events: list[Event]

    @classmethod
    def _checked(cls, msg: Self) -> Self:
        msg = super()._checked(msg)
        for event in msg.events:
            Event._checked(event)
        strangers = sorted({e.site for e in msg.events if e.site != msg.site})
        if strangers:
            raise ProtocolError(f"a batch of site {msg.site!r} holds events of {strangers}")
        return msg


def pack_events(site: str, bodies: list[bytes]) -> tuple[str, bytes]:
    """An EventBatch of encoded events, each forwarded byte for byte: (batch id, JSON)."""
    batch_id = new_id()
    batch = {
        "v": PROTOCOL_VERSION,
        "id": batch_id,
        "kind": "events",
        "site": site,
        "events": [msgspec.Raw(body) for body in bodies],
    }
    return batch_id, _ENCODER.encode(batch)


class _RawBatch(msgspec.Struct):
    """An EventBatch whose events stay undecoded bytes (each is decoded on its own)."""

    site: str
    events: list[msgspec.Raw]
    v: int = PROTOCOL_VERSION


_RAW_BATCH_DECODER = msgspec.json.Decoder(_RawBatch)


def decode_agent_events(data: bytes) -> list[tuple[Event, bytes]]:
    """What an agent sent on its evt topic: one event, or a batch's events, each with its
    own JSON (forwarded byte for byte). Raises ProtocolError for anything else."""
    try:
        kind = _KIND_DECODER.decode(data).kind
    except (msgspec.DecodeError, RecursionError):
        kind = None  # not JSON, or nested too deep: the event decoder says what is wrong
    if kind != "events":
        return [(Event.from_json(data), data)]
    try:
        raw = _RAW_BATCH_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed EventBatch: {exc}") from exc
    except RecursionError:
        raise ProtocolError("malformed EventBatch: nested too deep") from None
    pairs = [(Event.from_json(body), body) for body in map(bytes, raw.events)]
    EventBatch._checked(EventBatch(v=raw.v, site=raw.site, events=[e for e, _ in pairs]))
    return pairs


def batch_routing_key(site: str) -> str:
    """`<site>.gateway.batch`: the site's gateway speaking (as for its own presence), in
    the `<site>.<agent>.<kind>` shape a gateway's RabbitMQ user may publish. A binding on
    `#` or `<site>.#` takes batches; one on an agent's or a kind's keys does not."""
    return f"{site}.gateway.batch"


class _Kind(msgspec.Struct):
    """Only the `kind` of a message; decoding it skips every other field."""

    kind: Any = None


_KIND_DECODER = msgspec.json.Decoder(_Kind)


AnyMessage = Command | Event | EventBatch | Presence


def decode_any(data: bytes | str) -> AnyMessage:
    """Decode a message whose kind is not known in advance."""
    try:
        kind = _KIND_DECODER.decode(data).kind
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from exc
    except RecursionError:
        raise ProtocolError("not a message: nested too deep") from None
    classes: dict[str, type[AnyMessage]] = {
        "command": Command,
        "event": Event,
        "events": EventBatch,
        "presence": Presence,
    }
    cls = classes.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    result: AnyMessage = cls.from_json(data)
    return result


def decode_events(data: bytes | str) -> list[Event | Presence]:
    """What one tme.events message carries, in order: an event, a presence or a batch's
    events. Raises ProtocolError for anything else (a command has no business there)."""
    message = decode_any(data)
    if isinstance(message, EventBatch):
        return list(message.events)
    if isinstance(message, Command):
        raise ProtocolError("unexpected command on the events exchange")
    return [message]
