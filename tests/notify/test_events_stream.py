"""GET /api/v1/events over real HTTP: run changes as they happen, filters, and
resuming after a disconnect with Last-Event-ID."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest


@pytest.fixture
def token(admin_token: str) -> str:
    return admin_token


def _events(url: str, token: str, count: int, last_id: str | None = None, **params: str):
    """Read `count` events (id, kind, data) from the stream, then disconnect."""
    headers = {"Authorization": f"Bearer {token}"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    found: list[tuple[str, str, dict]] = []
    with httpx.stream(
        "GET", f"{url}/api/v1/events", params=params, headers=headers, timeout=15
    ) as response:
        assert response.status_code == 200, response.read()
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line == "":
                if "data" in fields:
                    found.append(
                        (fields.get("id", ""), fields.get("event", ""), json.loads(fields["data"]))
                    )
                    if len(found) == count:
                        return found
                fields = {}
                continue
            name, _, value = line.partition(":")
            fields[name] = value.lstrip(" ")
    return found


def _create(url: str, token: str, name: str, site: str = "plant-x") -> int:
    body = {"name": name, "op": "external", "target": None}
    if site:
        body = {"name": name, "op": "noop", "target": {"site": site, "agent": "a1"}}
    response = httpx.post(
        f"{url}/api/v1/tasks", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_stream_sends_changes_and_resumes_with_last_event_id(live_url, token) -> None:
    import threading

    first: list = []
    reader = threading.Thread(target=lambda: first.extend(_events(live_url, token, 1)))
    reader.start()
    # the reader starts at the present; wait for it to be connected before changing anything
    _wait_connected(live_url, token)
    task_a = _create(live_url, token, "first")
    reader.join(timeout=15)
    assert first and first[0][1] == "run" and first[0][2]["task_id"] == task_a
    resume_from = first[0][0]
    task_b = _create(live_url, token, "made while nobody listened")
    missed = _events(live_url, token, 1, last_id=resume_from, task=str(task_b))
    assert [(kind, data["task_id"], data["to_state"]) for _, kind, data in missed] == [
        ("run", task_b, "pending")
    ]


def test_stream_filters_by_site_and_state(live_url, token) -> None:
    _create(live_url, token, "elsewhere", site="other-site")
    wanted = _create(live_url, token, "here", site="plant-x")
    events = _events(live_url, token, 1, last_id="0-0", site="plant-x", state="pending")
    assert [(d["task_id"], d["site"], d["to_state"]) for _, _, d in events] == [
        (wanted, "plant-x", "pending")
    ]


def test_a_malformed_last_event_id_is_a_client_error(live_url, token) -> None:
    response = httpx.get(
        f"{live_url}/api/v1/events",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "yesterday"},
    )
    assert response.status_code == 422


@pytest.mark.parametrize("last_id", [f"{2**63}-1".encode(), f"1-{2**64}".encode(), b"\xb2-1"])
def test_a_last_event_id_no_stream_sent_is_refused_before_the_stream_starts(
    live_url, token, last_id: bytes
) -> None:
    # A number past the database's integers (or a "²", which isdigit() takes) was answered
    # 200, and the stream then broke: "Python int too large to convert to SQLite INTEGER".
    headers = {"Authorization": f"Bearer {token}".encode(), "Last-Event-ID": last_id}
    with httpx.stream("GET", f"{live_url}/api/v1/events", headers=headers, timeout=15) as answer:
        assert answer.status_code == 422
        answer.read()
    assert answer.json()["error"]["details"][0]["field"] == "Last-Event-ID"


def _opened(url: str, token: str, **params: str) -> httpx.Response:
    """The answer to opening the stream; its body read only when it is not a stream."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream(
        "GET", f"{url}/api/v1/events", params=params, headers=headers, timeout=15
    ) as response:
        if response.status_code != 200:
            response.read()
        return response


def test_a_state_that_is_no_run_state_is_refused_before_the_stream_starts(live_url, token) -> None:
    """It would match nothing, leaving the stream open and silent for ever: refused in
    the one error shape instead, naming the parameter and the run states there are."""
    for state in ("bogus", "failed,faild"):
        answer = _opened(live_url, token, state=state)
        assert answer.status_code == 422, answer.headers
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"].startswith("invalid request: state: unknown run state")
        assert "one of: pending, waiting, queued" in error["message"]
        assert [f["field"] for f in error["details"]] == ["state"]
    assert 'did you mean "failed"' in error["message"] and "'faild'" in error["message"]


def test_a_parameter_the_stream_does_not_take_is_refused_before_it_starts(live_url, token) -> None:
    """`stat=failed` (for `state`) was ignored: the stream sent every change."""
    answer = _opened(live_url, token, stat="failed")
    assert answer.status_code == 422, answer.headers
    error = answer.json()["error"]
    said = "invalid request: stat: unknown query parameter; did you mean 'state'?"
    assert error["message"] == said
    assert [f["field"] for f in error["details"]] == ["stat"]


def test_a_task_that_does_not_exist_is_refused_before_the_stream_starts(live_url, token) -> None:
    answer = _opened(live_url, token, task="987654")
    assert answer.status_code == 404, answer.headers
    assert answer.json()["error"]["message"] == "task 987654 does not exist"
    answer = _opened(live_url, token, task="abc")
    assert answer.status_code == 422 and answer.json()["error"]["details"][0]["field"] == "task"


def test_stream_needs_a_token(live_url) -> None:
    assert httpx.get(f"{live_url}/api/v1/events").status_code == 401


def _wait_connected(url: str, token: str) -> Iterator[None] | None:
    """The stream's opening comment proves a reader is past its starting point."""
    with httpx.stream(
        "GET", f"{url}/api/v1/events", headers={"Authorization": f"Bearer {token}"}, timeout=15
    ) as response:
        for line in response.iter_lines():
            if line.startswith(":"):
                return None
    return None


def _until_agent(url: str, token: str) -> list[tuple[str, dict]]:
    """(kind, data) of every event from the start up to the first agent event."""
    found: list[tuple[str, dict]] = []
    with httpx.stream(
        "GET",
        f"{url}/api/v1/events",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "0-0"},
        timeout=15,
    ) as response:
        assert response.status_code == 200, response.read()
        kind = ""
        for line in response.iter_lines():
            if line.startswith("event:"):
                kind = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                found.append((kind, json.loads(line.partition(":")[2])))
                if kind == "agent":
                    return found
    return found


def test_stream_sends_only_the_granted_sites(live_url, token, app, app_engine) -> None:
    """Run and agent events of other sites never reach a scoped reader, whatever it asks."""
    from tme.controller.services.bootstrap import make_user_with_token
    from tme.protocol import Presence

    scoped = make_user_with_token(app_engine, "scoped-viewer", "viewer", ["plant-x"]).token
    elsewhere = _create(live_url, token, "elsewhere", site="other-site")
    here = _create(live_url, token, "here", site="plant-x")
    feed = app.state.change_feed
    feed.on_message(Presence(site="other-site", agent="b1", state="online"))
    feed.on_message(Presence(site="plant-x", agent="a1", state="online"))

    admin_sees = _until_agent(live_url, token)
    assert {d["site"] for _, d in admin_sees} == {"other-site", "plant-x"}
    assert admin_sees[-1][1]["agent"] == "b1"

    events = _until_agent(live_url, scoped)
    assert {d["site"] for _, d in events} == {"plant-x"}
    assert {d["task_id"] for kind, d in events if kind == "run"} == {here}
    assert events[-1][1]["agent"] == "a1"

    headers = {"Authorization": f"Bearer {scoped}"}
    for params in ({"site": "other-site"}, {"task": str(elsewhere)}):
        answer = httpx.get(f"{live_url}/api/v1/events", params=params, headers=headers)
        assert answer.status_code == 404, (params, answer.text)


def test_an_open_stream_ends_once_its_user_is_disabled(live_url, app_engine, monkeypatch) -> None:
    """Credentials are checked when a stream opens and again every RECHECK_S: a user
    disabled (or a token revoked) while reading is cut off, not served for hours."""
    import threading

    from tme.controller import events_stream
    from tme.controller.services.bootstrap import make_user_with_token
    from tme.controller.services.users import disable_user
    from tme.controller.store.db import session_scope

    monkeypatch.setattr(events_stream, "RECHECK_S", 0.2)
    viewer = make_user_with_token(app_engine, "leaving-viewer", "viewer", "*").token
    opened, ended = threading.Event(), threading.Event()

    def read() -> None:
        headers = {"Authorization": f"Bearer {viewer}"}
        with httpx.stream("GET", f"{live_url}/api/v1/events", headers=headers, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith(":"):
                    opened.set()
        ended.set()  # the server closed the stream

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(15), "the stream did not open"
    assert not ended.is_set()
    with session_scope(app_engine) as session:
        disable_user(session, "leaving-viewer")
        session.commit()
    assert ended.wait(15), "the stream went on after its user was disabled"
