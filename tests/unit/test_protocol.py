"""Wire messages (tme.protocol): round trips, the JSON on the wire, and every decode error.

The messages were pydantic models before they were msgspec structs; `Ref*` below are
those models, kept here as the reference for the wire format: what the new encoder
writes must decode with them to the same values, and what they wrote must decode
with the new decoder to the same values.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal, get_args

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from tme.protocol import (
    PROTOCOL_VERSION,
    Command,
    Event,
    EventBatch,
    EventType,
    GatewayStatus,
    Message,
    Presence,
    ProtocolError,
    decode_any,
    decode_events,
    new_id,
    pack_events,
    utcnow,
)

# --- the reference: the pydantic models these structs replaced -----------------------


class RefMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    v: int = 1
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))


class RefCommand(RefMessage):
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
    not_after: datetime
    created_at: datetime = Field(default_factory=utcnow)
    deadline: datetime | None = None  # added after the move to msgspec
    priority: int = 5  # so was this


class RefEvent(RefMessage):
    kind: Literal["event"] = "event"
    command_id: str
    type: str
    site: str
    agent: str
    source: Literal["agent", "gateway", "controller"] = "agent"
    at: datetime = Field(default_factory=utcnow)
    reason: str = ""
    result: dict[str, Any] | None = None
    line: str | None = None
    progress: float | None = None
    not_started: bool = False


class RefPresence(RefMessage):
    kind: Literal["presence"] = "presence"
    site: str
    agent: str
    role: Literal["agent", "gateway"] = "agent"
    state: Literal["online", "offline"]
    at: datetime = Field(default_factory=utcnow)
    devices: list[dict[str, Any]] = Field(default_factory=list)
    features: list[str] = Field(default_factory=list)  # added after the move to msgspec
    status: RefGatewayStatus | None = None  # so was this
    upstream: bool | None = None  # and this


class RefGatewayStatus(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    heartbeat_s: float
    mqtt_connected: bool
    consuming: bool
    commands_pending: int = 0
    commands_unanswered: int = 0
    events_waiting: int = 0
    journal_failing: bool = False


REFERENCE: dict[type[Message], type[RefMessage]] = {
    Command: RefCommand,
    Event: RefEvent,
    Presence: RefPresence,
}

# --- strategies -----------------------------------------------------------------------

texts = st.text(st.characters(codec="utf-8"), max_size=20)
ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)  # what JSON peers take as exact
floats = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
json_objects = st.dictionaries(texts, json_values, max_size=5)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware_times = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets
)
# Ids and names are never empty (and ids at most 36 characters, names 64: the protocol's
# bounds, which the database's columns set).
names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=20)
ids = st.uuids().map(str) | names
event_types = st.sampled_from(get_args(EventType))

commands = st.builds(
    Command,
    id=ids,
    task_id=ints,
    attempt=ints,
    site=names,
    agent=names,
    device=st.none() | texts,
    op=texts,
    params=json_objects,
    cmd=st.none() | texts,
    timeout_s=floats,
    not_after=aware_times,
    created_at=aware_times,
    deadline=st.none() | aware_times,
    priority=st.integers(min_value=0, max_value=9),
)
events = st.builds(
    Event,
    id=ids,
    command_id=ids,
    type=event_types,
    site=names,
    agent=names,
    source=st.sampled_from(["agent", "gateway", "controller"]),
    at=aware_times,
    reason=texts,
    result=st.none() | json_objects,
    line=st.none() | texts,
    progress=st.none() | floats,
    not_started=st.booleans(),
)
presences = st.builds(
    Presence,
    id=ids,
    site=names,
    agent=names,
    role=st.sampled_from(["agent", "gateway"]),
    state=st.sampled_from(["online", "offline"]),
    at=aware_times,
    devices=st.lists(json_objects, max_size=3),
    features=st.lists(texts, max_size=3),
    upstream=st.none() | st.booleans(),
    status=st.none()
    | st.builds(
        GatewayStatus,
        heartbeat_s=st.floats(min_value=0.001, max_value=1e6),
        mqtt_connected=st.booleans(),
        consuming=st.booleans(),
        commands_pending=ints,
        commands_unanswered=ints,
        events_waiting=ints,
        journal_failing=st.booleans(),
    ),
)
messages = commands | events | presences


def fields_of(message: Message) -> dict[str, Any]:
    """The fields, a nested struct (a gateway's status) as a dict, as pydantic dumps it."""
    return {name: _plain(getattr(message, name)) for name in message.__struct_fields__}


def _plain(value: Any) -> Any:
    return msgspec.structs.asdict(value) if isinstance(value, msgspec.Struct) else value


# --- round trips ----------------------------------------------------------------------


@given(messages)
def test_a_message_round_trips_through_its_json(message: Command | Event | Presence) -> None:
    raw = message.to_json()
    assert type(message).from_json(raw) == message
    assert type(message).from_json(raw.decode()) == message
    assert decode_any(raw) == message
    assert message.model_dump_json() == raw.decode()


@given(messages)
def test_the_new_json_decodes_with_the_pydantic_models_to_the_same_values(
    message: Command | Event | Presence,
) -> None:
    reference = REFERENCE[type(message)].model_validate_json(message.to_json())
    assert reference.model_dump() == fields_of(message)
    assert set(json.loads(message.to_json())) == set(type(reference).model_fields)


@given(messages)
def test_the_pydantic_json_decodes_with_the_new_models_to_the_same_values(
    message: Command | Event | Presence,
) -> None:
    reference = REFERENCE[type(message)].model_validate(fields_of(message))
    assert type(message).from_json(reference.model_dump_json()) == message


def test_utc_times_are_written_as_pydantic_wrote_them() -> None:
    at = datetime(2026, 3, 1, 12, 30, 5, 250, tzinfo=UTC)
    event = Event(command_id="c1", type="accepted", site="s1", agent="a1", at=at)
    reference = RefEvent.model_validate(fields_of(event))
    assert json.loads(event.to_json())["at"] == "2026-03-01T12:30:05.000250Z"
    assert event.to_json() == reference.model_dump_json().encode()  # fields, order, format
    whole = event.model_copy(update={"at": at.replace(microsecond=0)})
    assert json.loads(whole.to_json())["at"] == "2026-03-01T12:30:05Z"


def test_times_decode_aware_from_z_offsets_and_unix_seconds() -> None:
    base = json.loads(Event(command_id="c1", type="log", site="s", agent="a").to_json())
    expected = datetime(2026, 1, 1, tzinfo=UTC)
    for text in ("2026-01-01T00:00:00Z", "2026-01-01T02:00:00+02:00", 1767225600):
        event = Event.from_json(json.dumps({**base, "at": text}))
        assert event.at == expected and event.at.utcoffset() is not None


# --- defaults and the pydantic-style API ---------------------------------------------


def test_defaults_a_fresh_uuid_the_version_and_the_current_utc_time() -> None:
    before = datetime.now(UTC)
    first = Presence(site="s", agent="a", state="online")
    second = Presence(site="s", agent="a", state="online")
    assert first.id != second.id and str(uuid.UUID(first.id)) == first.id
    assert first.v == PROTOCOL_VERSION and first.kind == "presence" and first.role == "agent"
    assert first.at.utcoffset() == timedelta(0) and before <= first.at <= datetime.now(UTC)
    assert first.devices == [] and first.devices is not second.devices
    command = Command(task_id=1, site="s", agent="a", op="noop", timeout_s=1, not_after=utcnow())
    assert command.params == {} and command.attempt == 1 and command.created_at.tzinfo is UTC


def test_new_ids_are_random_version_4_uuids_as_text() -> None:
    ids = [new_id() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every other bit varies (none stuck at 0 or 1)
    numbers = [uuid.UUID(text).int for text in ids]
    fixed = (0xF000 << 64) | (0xC000 << 48)
    assert all(any(n >> bit & 1 for n in numbers) for bit in range(128) if not fixed >> bit & 1)
    assert all(not all(n >> bit & 1 for n in numbers) for bit in range(128) if not fixed >> bit & 1)


def test_messages_are_frozen_and_model_copy_replaces_fields() -> None:
    event = Event(command_id="c1", type="accepted", site="s", agent="a")
    with pytest.raises(AttributeError):
        event.reason = "changed"  # type: ignore[misc]
    copy = event.model_copy(update={"type": "started", "reason": "go"})
    assert (copy.type, copy.reason, copy.id, copy.at) == ("started", "go", event.id, event.at)
    assert (event.type, event.reason) == ("accepted", "")
    assert event.model_copy() == event


def test_model_dump_gives_python_or_json_values() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = Event(command_id="c", type="succeeded", site="s", agent="a", at=at, result={"x": [1]})
    dumped = event.model_dump()
    assert dumped["at"] == at and dumped["result"] == {"x": [1]} and dumped["kind"] == "event"
    dumped["result"]["x"].append(2)
    assert event.result == {"x": [1]}  # a copy: the frozen message is not changed through it
    assert event.model_dump(mode="json")["at"] == "2026-01-01T00:00:00Z"
    assert event.model_dump(mode="json") == json.loads(event.to_json())


def test_model_validate_builds_a_checked_message_from_python_values() -> None:
    values = {"task_id": "7", "site": "s", "agent": "a", "op": "noop", "timeout_s": 5}
    command = Command.model_validate({**values, "not_after": "2026-01-01T00:00:00Z"})
    assert command.task_id == 7 and command.timeout_s == 5.0
    assert command.not_after == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ProtocolError, match="not_after"):
        Command.model_validate(values)


def test_unknown_fields_from_a_newer_sender_are_ignored() -> None:
    event = Event(command_id="c1", type="log", site="s", agent="a", line="hello")
    body = {**json.loads(event.to_json()), "added_later": {"x": 1}}
    assert Event.from_json(json.dumps(body)) == event


def _older(cls: type[Message], without: str) -> type[Message]:
    """`cls` as an older peer has it: the same struct without the field `without`."""
    fields = []
    for info in msgspec.structs.fields(cls):
        if info.name == without:
            continue
        if info.default_factory is not msgspec.NODEFAULT:
            fields.append(
                (info.name, info.type, msgspec.field(default_factory=info.default_factory))
            )
        elif info.default is not msgspec.NODEFAULT:
            fields.append((info.name, info.type, info.default))
        else:
            fields.append((info.name, info.type))
    older: Any = msgspec.defstruct(
        f"Older{cls.__name__}", fields, bases=(Message,), frozen=True, kw_only=True
    )
    return older  # type: ignore[no-any-return]


def _command(**fields: Any) -> Command:
    return Command(
        task_id=1, site="s", agent="a", op="noop", timeout_s=1, not_after=utcnow(), **fields
    )


def test_a_command_without_priority_from_an_older_controller_decodes_at_the_default() -> None:
    body = json.loads(_command().to_json())
    del body["priority"]
    assert Command.from_json(json.dumps(body)).priority == 5


def test_an_older_agent_or_gateway_ignores_a_command_priority() -> None:
    command = _command(priority=9)
    assert json.loads(command.to_json())["priority"] == 9
    older = _older(Command, "priority").from_json(command.to_json())
    assert not hasattr(older, "priority")
    assert fields_of(older) == {k: v for k, v in fields_of(command).items() if k != "priority"}


@pytest.mark.parametrize("priority", [-1, 10, "high"])
def test_a_command_priority_outside_0_to_9_is_refused_naming_it(priority: Any) -> None:
    body = {**json.loads(_command().to_json()), "priority": priority}
    _refusal(Command.from_json, json.dumps(body), ["malformed Command", "$.priority"])


def test_a_message_needs_no_pydantic() -> None:
    assert not issubclass(Command, BaseModel)
    assert isinstance(Command.__struct_config__, msgspec.structs.StructConfig)
    assert Command.__struct_config__.frozen


# --- every ProtocolError path -----------------------------------------------------------


def _event_json(**changes: Any) -> str:
    body = json.loads(Event(command_id="c1", type="accepted", site="s", agent="a").to_json())
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...})


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("{not json", ["malformed Event"]),
        (b"\xff\xfe", ["malformed Event"]),
        ("[1, 2]", ["malformed Event", "object", "array"]),
        ('"text"', ["malformed Event", "object", "str"]),
        (_event_json(v=2), ["unsupported protocol version 2"]),
        (_event_json(v="one"), ["malformed Event", "int", "$.v"]),
        (_event_json(command_id=...), ["malformed Event", "missing", "command_id"]),
        (_event_json(type="exploded"), ["malformed Event", "exploded", "$.type"]),
        (_event_json(kind="command"), ["malformed Event", "command", "$.kind"]),
        (_event_json(progress="half"), ["malformed Event", "float", "$.progress"]),
        (_event_json(result=[1]), ["malformed Event", "object", "$.result"]),
        (_event_json(at="yesterday"), ["malformed Event", "datetime", "$.at"]),
        (_event_json(at="2026-01-01T00:00:00"), ["malformed Event", "timezone", "$.at"]),
    ],
)
def test_from_json_raises_protocol_error_naming_what_was_wrong(
    data: str | bytes, words: list[str]
) -> None:
    assert _refusal(Event.from_json, data, words).code == "protocol_error"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ("{not json", ["not a JSON object"]),
        ("[1]", ["not a JSON object", "array"]),
        ("null", ["not a JSON object"]),
        ('{"v": 1}', ["unknown message kind None"]),
        ('{"kind": "bulletin"}', ["unknown message kind 'bulletin'"]),
        ('{"kind": 3}', ["unknown message kind 3"]),
        (_event_json(v=9), ["unsupported protocol version 9"]),
        (_event_json(site=...), ["malformed Event", "site"]),
        ('{"kind": "command", "v": 1}', ["malformed Command", "missing"]),
    ],
)
def test_decode_any_raises_protocol_error_naming_what_was_wrong(
    data: str, words: list[str]
) -> None:
    _refusal(decode_any, data, words)


def test_decode_any_picks_the_class_by_kind() -> None:
    presence = Presence(site="s", agent="a", state="offline")
    command = Command(task_id=1, site="s", agent="a", op="noop", timeout_s=1, not_after=utcnow())
    assert isinstance(decode_any(presence.to_json()), Presence)
    assert isinstance(decode_any(command.to_json()), Command)


def _encoded_event(site: str, **fields: Any) -> bytes:
    return Event(command_id="c", type="accepted", site=site, agent="a", **fields).to_json()


def test_an_event_batch_decodes_to_its_events_in_order() -> None:
    bodies = [_encoded_event("s"), _encoded_event("s", reason="second")]
    batch_id, body = pack_events("s", bodies)
    batch = decode_any(body)
    assert isinstance(batch, EventBatch) and batch.id == batch_id and batch.site == "s"
    assert decode_events(body) == [Event.from_json(b) for b in bodies]


@pytest.mark.parametrize(
    ("bodies", "words"),
    [
        ([_encoded_event("elsewhere")], ["site 's'", "elsewhere"]),
        ([_encoded_event("s", v=9)], ["unsupported protocol version 9"]),
        ([b'{"kind": "event"}'], ["malformed EventBatch"]),
    ],
)
def test_a_bad_event_spoils_its_whole_batch(bodies: list[bytes], words: list[str]) -> None:
    _, body = pack_events("s", bodies)
    _refusal(decode_events, body, words)


def test_decode_events_takes_what_the_events_exchange_carries_and_refuses_a_command() -> None:
    presence = Presence(site="s", agent="a", state="online")
    assert decode_events(presence.to_json()) == [presence]
    event = Event.from_json(_encoded_event("s"))
    assert decode_events(event.to_json()) == [event]
    command = Command(task_id=1, site="s", agent="a", op="noop", timeout_s=1, not_after=utcnow())
    with pytest.raises(ProtocolError, match="unexpected command"):
        decode_events(command.to_json())


def _refusal(decode: Any, data: str | bytes, words: list[str]) -> ProtocolError:
    """The ProtocolError decoding `data` raises; its message names every one of `words`."""
    with pytest.raises(ProtocolError) as info:
        decode(data)
    for word in words:
        assert word in info.value.message
    return info.value
