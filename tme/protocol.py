"""Wire messages between controller, gateway and agent (protocol version 1).

Every message is JSON, frozen and versioned, with a UUID `id` that is also its
idempotency key and UTC timestamps. All correlation travels in the payload, never
only in MQTT 5 properties, so MQTT 3.1.1 (the embedded broker) works the same.

Topics (built in tme.topics, re-exported here) and routing keys are spelled here too,
so no other module spells them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as _PydanticError

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


def new_id() -> str:
    return str(uuid.uuid4())


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


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    v: int = PROTOCOL_VERSION
    id: str = Field(default_factory=new_id)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Any:
        try:
            msg = cls.model_validate_json(data)
        except _PydanticError as exc:
            raise ProtocolError(f"malformed {cls.__name__}: {exc.errors()[:3]}") from exc
        if msg.v != PROTOCOL_VERSION:
            raise ProtocolError(f"unsupported protocol version {msg.v}")
        return msg


class Command(Message):
    """Do one operation on one agent. `id` is the run id and the command id."""

    kind: Literal["command"] = "command"
    task_id: int
    attempt: int = 1
    site: str
    agent: str
    device: str | None = None
    op: str
    params: dict[str, Any] = Field(default_factory=dict)
    cmd: str | None = None
    timeout_s: float
    not_after: datetime  # the agent refuses (expired) a command it receives after this
    created_at: datetime = Field(default_factory=utcnow)


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


class Event(Message):
    """Something that happened to a command, reported back to the controller."""

    kind: Literal["event"] = "event"
    command_id: str
    type: EventType
    site: str
    agent: str
    source: Literal["agent", "gateway", "controller"] = "agent"
    at: datetime = Field(default_factory=utcnow)
    reason: str = ""
    result: dict[str, Any] | None = None
    line: str | None = None
    progress: float | None = None
    # True when the agent knows the operation never touched the machine, so a retry is safe.
    not_started: bool = False


class Presence(Message):
    """An agent or gateway going online or offline (retained on its state topic)."""

    kind: Literal["presence"] = "presence"
    site: str
    agent: str
    role: Literal["agent", "gateway"] = "agent"
    state: Literal["online", "offline"]
    at: datetime = Field(default_factory=utcnow)
    devices: list[dict[str, Any]] = Field(default_factory=list)


def decode_any(data: bytes | str) -> Command | Event | Presence:
    """Decode a message whose kind is not known in advance."""
    import json

    try:
        kind = json.loads(data).get("kind")
    except (ValueError, AttributeError) as exc:
        raise ProtocolError(f"not a JSON object: {exc}") from exc
    classes: dict[str, type[Command] | type[Event] | type[Presence]] = {
        "command": Command,
        "event": Event,
        "presence": Presence,
    }
    cls = classes.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind!r}")
    result: Command | Event | Presence = cls.from_json(data)
    return result
