"""Bad requests: each answers its 4xx in the one error shape, names the problem, writes nothing.

Row counts of every task table are compared before and after each request through
the app's own engine; no request may end in a 500.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from api_helpers import assert_error, row_counts
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tme.config import Settings
from tme.controller.app import create_app
from tme.controller.services.bootstrap import Credentials, make_user_with_token
from tme.controller.services.paging import encode_cursor
from tme.controller.store.db import make_engine

JSON = {"content-type": "application/json"}
MACHINE = {"site": "plant-1", "agent": "skid-a"}
Ids = dict[str, int]


@dataclass(frozen=True)
class Bad:
    method: str
    path: str  # may name {E} (pending external task), {F} (finished), {M} (machine), {D}
    status: int
    words: tuple[str, ...]
    json: Any = None  # a value, or a function of the ids
    content: Any = None
    headers: dict[str, str] = field(default_factory=dict)


def _chunks() -> Iterator[bytes]:
    for _ in range(11):  # 11 x 100 kB > 1 MiB, with no Content-Length
        yield b" " * 100_000


CASES: dict[str, Bad] = {
    "malformed json": Bad(
        "POST", "/api/v1/tasks", 400, ("not valid JSON",), content=b'{"name": ', headers=JSON
    ),
    "not utf-8": Bad(
        "POST", "/tasks/create", 400, ("not valid JSON",), content=b"\xff\xfe\x00", headers=JSON
    ),
    "body is a list": Bad("POST", "/api/v1/tasks", 422, ("body",), json=[1, 2]),
    "empty body": Bad(
        "POST", "/tasks/create", 422, ("body", "required"), content=b"", headers=JSON
    ),
    "wrong type name": Bad("POST", "/api/v1/tasks", 422, ("name", "string"), json={"name": 5}),
    "wrong type params": Bad(
        "POST", "/api/v1/tasks", 422, ("params",), json={"name": "x", "params": [1]}
    ),
    "unknown field": Bad(
        "POST",
        "/tasks/create",
        422,
        ("unknown field", "colour"),
        json={"name": "x", "colour": "red"},
    ),
    "unknown field in update": Bad(
        "PATCH", "/task/{E}/", 422, ("unknown field", "op"), json={"op": "noop"}
    ),
    "missing name": Bad(
        "POST", "/api/v1/tasks", 422, ("name", "required"), json={"description": "no name"}
    ),
    "oversize content-length": Bad(
        "POST",
        "/api/v1/tasks",
        413,
        ("larger than 1048576",),
        json={"name": "x", "description": "y" * 1_100_000},
    ),
    "oversize chunked": Bad(
        "POST", "/tasks/create", 413, ("larger than 1048576",), content=_chunks(), headers=JSON
    ),
    "too long name": Bad(
        "POST", "/api/v1/tasks", 422, ("name", "at most 200"), json={"name": "n" * 201}
    ),
    "too long log": Bad(
        "PUT", "/task/{E}/", 422, ("log",), json={"status": "fail", "log": "l" * (256 * 1024 + 1)}
    ),
    "priority out of range": Bad(
        "POST", "/api/v1/tasks", 422, ("priority",), json={"name": "x", "priority": 10}
    ),
    "timeout out of range": Bad(
        "PATCH", "/api/v1/tasks/{E}", 422, ("timeout_s",), json={"timeout_s": -1}
    ),
    "infinite number": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("priority", "finite"),
        content=b'{"name": "x", "priority": 1e400}',
        headers=JSON,
    ),
    "nan in params": Bad(
        "POST",
        "/tasks/create",
        422,
        ("params", "finite"),
        content=b'{"name": "x", "params": {"v": NaN}}',
        headers=JSON,
    ),
    "nul in name": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("name", "NUL"),
        content=b'{"name": "a\\u0000b"}',
        headers=JSON,
    ),
    "null name in update": Bad("PATCH", "/task/{E}/", 422, ("name", "null"), json={"name": None}),
    "null priority in update": Bad(
        "PUT", "/task/{E}/", 422, ("priority", "null"), json={"priority": None}
    ),
    "id not an integer": Bad("GET", "/api/v1/tasks/abc", 422, ("task_id", "integer")),
    "id zero": Bad("PATCH", "/task/0/", 422, ("task_id", "greater than 0"), json={"name": "x"}),
    "id negative": Bad("DELETE", "/task/-3", 422, ("task_id", "greater than 0")),
    "id huge": Bad("GET", "/api/v1/tasks/99999999999999999999", 422, ("task_id",)),
    "unknown id get": Bad("GET", "/api/v1/tasks/424242", 404, ("task 424242 does not exist",)),
    "unknown id update": Bad("PUT", "/task/424242/", 404, ("task 424242",), json={"name": "x"}),
    "unknown id delete": Bad("DELETE", "/task/424242/", 404, ("task 424242",)),
    "unknown run": Bad("GET", "/api/v1/runs/not-a-run", 404, ("run not-a-run",)),
    "run id too long": Bad("GET", "/api/v1/runs/" + "r" * 65, 422, ("run_id",)),
    "unknown path": Bad("GET", "/api/v2/tasks", 404, ("no such path: /api/v2/tasks",)),
    "unknown path with an override": Bad(
        "GET", "/api/v2/pump%E2%80%AEstop", 404, ("no such path: /api/v2/pump\\u202estop",)
    ),
    "wrong method": Bad(
        "PUT", "/api/v1/tasks/{E}", 405, ("method PUT is not allowed", "PATCH"), json={"name": "x"}
    ),
    # /tasks/batch also matches /tasks/{task_id}: its method is wrong, not "batch" as an id
    "method the batch path does not take": Bad(
        "PATCH", "/api/v1/tasks/batch", 405, ("method PATCH is not allowed", "takes POST"), json={}
    ),
    # curl -d sends a form's type: the answer says which type to send
    "body sent as a form": Bad(
        "POST",
        "/api/v1/tasks",
        415,
        ("must be JSON", "application/json", "x-www-form-urlencoded"),
        content=b'{"name": "x"}',
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    "update sent as text": Bad(
        "PATCH",
        "/api/v1/tasks/{E}",
        415,
        ("must be JSON", "text/plain"),
        content=b'{"name": "renamed"}',
        headers={"content-type": "text/plain"},
    ),
    "bad cursor garbage": Bad("GET", "/api/v1/tasks?cursor=%21%21%21", 422, ("invalid cursor",)),
    "bad cursor shape": Bad(
        "GET", "/tasks/?cursor=" + encode_cursor("abc"), 422, ("invalid cursor",)
    ),
    "bad runs cursor": Bad(
        "GET", "/api/v1/tasks/{E}/runs?cursor=" + encode_cursor("x", "y"), 422, ("invalid cursor",)
    ),
    "limit zero": Bad("GET", "/api/v1/tasks?limit=0", 422, ("limit",)),
    "limit too big": Bad("GET", "/tasks/?limit=100000", 422, ("limit",)),
    "fail after complete": Bad(
        "PUT", "/task/{F}/", 409, ("'succeeded'", "'failed'", "final"), json={"status": "fail"}
    ),
    "status of a machine task": Bad(
        "PATCH", "/task/{M}/", 409, ("reported by its agent",), json={"status": "started"}
    ),
    "idempotency conflict": Bad(
        "POST",
        "/api/v1/tasks",
        409,
        ("different request body",),
        json={"name": "not the first body"},
        headers={"Idempotency-Key": "used-key"},
    ),
    "idempotency key too long": Bad(
        "POST",
        "/tasks/create",
        422,
        ("idempotency-key",),
        json={"name": "x"},
        headers={"Idempotency-Key": "k" * 201},
    ),
    "bad cron": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("invalid cron expression",),
        json={"name": "x", "schedule": {"cron": "61 * * * *"}},
    ),
    "unknown timezone": Bad(
        "POST",
        "/tasks/create",
        422,
        ("unknown time zone", "Mars/Base"),
        json={"name": "x", "schedule": {"cron": "0 6 * * *", "timezone": "Mars/Base"}},
    ),
    "two schedule kinds": Bad(
        "PATCH",
        "/api/v1/tasks/{E}",
        422,
        ("exactly one of",),
        json={"schedule": {"every_s": 5, "cron": "* * * * *"}},
    ),
    "dependency on a missing task": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("task 777777 does not exist",),
        json={"name": "x", "depends_on": [{"task": 777777}]},
    ),
    "dependency id beyond 64 bits": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("depends_on.0.task",),
        json={"name": "x", "depends_on": [{"task": 2**64}]},
    ),
    "dependency cycle": Bad(
        "PATCH",
        "/task/{E}/",
        422,
        ("dependency cycle",),
        json=lambda i: {"depends_on": [{"task": i["D"]}]},
    ),
    "self dependency": Bad(
        "PATCH",
        "/api/v1/tasks/{E}",
        422,
        ("cannot depend on itself",),
        json=lambda i: {"depends_on": [{"task": i["E"]}]},
    ),
    "bad dependency outcome": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("on",),
        json=lambda i: {"name": "x", "depends_on": [{"task": i["E"], "on": "maybe"}]},
    ),
    "delete a dependency": Bad("DELETE", "/task/{E}", 409, ("is a dependency of",)),
    "empty update": Bad("PATCH", "/task/{E}/", 422, ("update is empty",), json={}),
    "log without status": Bad("PUT", "/task/{E}/", 422, ("with a status",), json={"log": "x"}),
    "unknown status word": Bad("PUT", "/task/{E}/", 422, ("status",), json={"status": "done"}),
    "shell without cmd": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("needs cmd",),
        json={"name": "x", "op": "shell", "target": MACHINE},
    ),
    "cmd on a non-shell op": Bad(
        "POST",
        "/tasks/create",
        422,
        ("cmd is only for op 'shell'",),
        json={"name": "x", "cmd": "rm -rf /"},
    ),
    "cmd added to a non-shell task": Bad(
        "PATCH", "/task/{E}/", 422, ("only for op 'shell'",), json={"cmd": "ls"}
    ),
    "machine op without target": Bad(
        "POST", "/api/v1/tasks", 422, ("needs a target",), json={"name": "x", "op": "noop"}
    ),
    "machine task loses its agent": Bad(
        "PATCH", "/api/v1/tasks/{M}", 422, ("needs a target",), json={"target": {"site": "plant-1"}}
    ),
    "device op without device": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("needs a target device",),
        json={"name": "x", "op": "modbus.read", "target": MACHINE, "params": {"point": "level"}},
    ),
    "bad params for op": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("seconds",),
        json={"name": "x", "op": "sleep", "target": MACHINE, "params": {"secs": 1}},
    ),
    "topic wildcard in site": Bad(
        "POST",
        "/api/v1/tasks",
        422,
        ("target.site",),
        json={"name": "x", "target": {"site": "plant/#"}},
    ),
    "unknown op": Bad("POST", "/api/v1/tasks", 422, ("op",), json={"name": "x", "op": "launch"}),
    # a filter that would match nothing, or a misspelt one that would filter nothing
    "unknown status filter": Bad("GET", "/api/v1/tasks?status=bogus", 422, ("status", "one of")),
    "unknown status filter, seed path": Bad("GET", "/tasks/?status=done", 422, ("status",)),
    "unknown op filter": Bad("GET", "/api/v1/tasks?op=modbus.reed", 422, ("op", "modbus.read")),
    "misspelt filter": Bad("GET", "/api/v1/tasks?stauts=failed", 422, ("stauts", "'status'")),
    "online not a boolean": Bad("GET", "/api/v1/agents?online=maybe", 422, ("online", "true")),
    # an empty filter matched everything, where an empty op was refused
    "empty site filter": Bad("GET", "/api/v1/tasks?site=", 422, ("site", "at least 1")),
    "empty agent filter": Bad("GET", "/api/v1/tasks?agent=", 422, ("agent", "at least 1")),
    "empty search": Bad("GET", "/api/v1/tasks?q=", 422, ("q", "at least 1")),
    "empty device site filter": Bad("GET", "/api/v1/devices?site=", 422, ("site",)),
    "empty audit actor": Bad("GET", "/api/v1/audit?actor=", 422, ("actor",)),
    "unknown delivery status": Bad(
        "GET", "/api/v1/notifications/deliveries?status=sent", 422, ("status", "'delivered'")
    ),
    "unknown report grouping": Bad(
        "GET", "/api/v1/reports/summary?group_by=device", 422, ("group_by", "'agent'")
    ),
    "misspelt force of a cancel": Bad(
        "POST", "/api/v1/runs/not-a-run/cancel?forse=true", 422, ("forse", "'force'")
    ),
}


def make_world(client: TestClient) -> Ids:
    """Tasks the bad requests aim at; none of them has work in flight to a machine."""

    def make(url: str = "/api/v1/tasks", **body: Any) -> int:
        response = client.post(url, json={"name": "setup", **body})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    ids = {
        "E": make(),
        "F": make(),
        "M": make(op="noop", target=MACHINE, schedule={"every_s": 3600}),
    }
    ids["D"] = make(depends_on=[{"task": ids["E"]}])
    make("/tasks/create", name="keyed")
    keyed = client.post(
        "/tasks/create", json={"name": "keyed"}, headers={"Idempotency-Key": "used-key"}
    )
    assert keyed.status_code == 201
    for word in ("started", "complete"):
        assert client.put(f"/task/{ids['F']}/", json={"status": word}).status_code == 200
    return ids


@dataclass(frozen=True)
class World:
    database: Path  # a stopped controller's database, with the world in it
    ids: Ids
    admin: Credentials


@pytest.fixture(scope="module")
def world_made(
    tmp_path_factory: pytest.TempPathFactory, upgraded_sqlite: Path, fixture_password: str
) -> World:
    """The world, made once through the API of a controller then stopped; each test
    starts its own controller on a copy of its database (0.1 s a test less)."""
    database = tmp_path_factory.mktemp("world") / "tme.db"
    shutil.copyfile(upgraded_sqlite, database)
    settings = Settings(database={"url": f"sqlite:///{database}"}, broker={"url": "memory://"})
    engine = make_engine(str(settings.database.url))
    admin = make_user_with_token(engine, "admin", "admin", "*", password=fixture_password)
    app = create_app(settings, engine=engine, warm=False)
    with TestClient(app, headers={"Authorization": f"Bearer {admin.token}"}) as client:
        ids = make_world(client)
    with engine.connect() as connection:  # everything in the file itself, none in a WAL
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return World(database, ids, admin)


@pytest.fixture
def app_engine(app_settings: Any, world_made: World) -> Iterator[Engine]:
    """The test's own copy of the world's database (overrides tests/conftest.py's)."""
    url = str(app_settings.database.url)
    shutil.copyfile(world_made.database, url.removeprefix("sqlite:///"))
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def admin_credentials(world_made: World) -> Credentials:
    return world_made.admin


@pytest.fixture
def world(world_made: World) -> Ids:
    return dict(world_made.ids)


def test_enough_distinct_cases() -> None:
    assert len(CASES) >= 25
    assert {c.status for c in CASES.values()} >= {400, 404, 405, 409, 413, 415, 422}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_request(name: str, test_client: TestClient, world: Ids, app_engine: Any) -> None:
    case = CASES[name]
    kwargs: dict[str, Any] = {"headers": case.headers}
    if case.content is not None:
        kwargs["content"] = case.content
    elif case.json is not None:
        kwargs["json"] = case.json(world) if callable(case.json) else case.json
    before = row_counts(app_engine)
    response = test_client.request(case.method, case.path.format(**world), **kwargs)
    assert response.status_code < 500, response.text
    assert_error(response, case.status, *case.words)
    assert row_counts(app_engine) == before, "a refused request wrote rows"


def test_error_details_name_the_field(test_client: TestClient) -> None:
    response = test_client.post("/api/v1/tasks", json={"name": "", "priority": 99, "x": 1})
    error = assert_error(response, 422, "unknown field", "x")
    assert {d["field"] for d in error["details"]} == {"name", "priority", "x"}
    assert all({"field", "message", "type"} <= set(d) for d in error["details"])


def test_oversize_refused_before_reading(
    test_client: TestClient, counts: Callable[[], dict[str, int]]
) -> None:
    """A Content-Length over the limit is answered without waiting for the body."""
    before = counts()
    response = test_client.post(
        "/tasks/create", content=b"{}", headers={**JSON, "content-length": str(2 * 1024 * 1024)}
    )
    error = assert_error(response, 413, "larger than")
    assert error["details"] == {"max_bytes": 1_048_576}
    assert counts() == before


def test_oversize_chunked_is_answered_as_oversize_content_length(test_client: TestClient) -> None:
    """However the body came, the 413 is the same answer (its details included)."""
    declared = test_client.post(
        "/api/v1/tasks", content=b"{}", headers={**JSON, "content-length": str(2 * 1024 * 1024)}
    )
    streamed = test_client.post("/api/v1/tasks", content=_chunks(), headers=JSON)
    assert declared.status_code == streamed.status_code == 413
    assert streamed.json() == declared.json()
    assert streamed.json()["error"]["details"] == {"max_bytes": 1_048_576}
    assert streamed.content == declared.content


def test_a_task_name_is_one_line_without_control_characters(test_client, counts) -> None:
    """A name shows in lists, email subjects and terminals: ESC cleared a terminal, a
    newline split an email's subject, a bidi override made a name read as another."""
    before = counts()
    for name, code in (("a\u001b[2Jb", "001B"), ("two\nlines", "000A"), ("x\u202ey", "202E")):
        response = test_client.post("/api/v1/tasks", json={"name": name})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert [f["field"] for f in error["details"]] == ["name"]
        assert f"control character U+{code}" in error["message"]
    assert counts() == before
    created = test_client.post("/api/v1/tasks", json={"name": "fill tank 1 — étape 2"})
    assert created.status_code == 201, created.text
    renamed = test_client.patch(
        f"/api/v1/tasks/{created.json()['id']}", json={"name": "fill\ttank"}
    )
    assert renamed.status_code == 422 and "U+0009" in renamed.text


def test_who_a_task_is_assigned_to_is_one_line_as_a_name_is(test_client, counts) -> None:
    """assigned_to shows beside the name in lists: a bidi override made it read as
    another person, a newline split the list's row."""
    before = counts()
    for who, code in (("ops\u202e", "202E"), ("night\nshift", "000A")):
        response = test_client.post("/api/v1/tasks", json={"name": "x", "assigned_to": who})
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert [f["field"] for f in error["details"]] == ["assigned_to"]
        assert f"control character U+{code}" in error["message"]
    assert counts() == before
    made = test_client.post("/api/v1/tasks", json={"name": "x", "assigned_to": "Anaïs"})
    assert made.status_code == 201, made.text
    task_id = made.json()["id"]
    changed = test_client.patch(f"/api/v1/tasks/{task_id}", json={"assigned_to": "x\u202ey"})
    assert changed.status_code == 422 and "U+202E" in changed.text
