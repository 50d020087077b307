"""tme.AsyncClient against the real controller app, in-process through httpx's ASGITransport."""

from __future__ import annotations

import errno
import os
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import tme
from tme.errors import Conflict, NotFound, TransportError, ValidationError


@pytest.fixture
async def aclient(app: Any, admin_token: str, test_client: Any) -> AsyncIterator[tme.AsyncClient]:
    """The app with its lifespan run (by `test_client`), so its runtime settles finished
    runs as a controller does: `wait()` returns an outcome only once it is settled."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {admin_token}"}
    http = httpx.AsyncClient(transport=transport, base_url="http://tme.test", headers=headers)
    async with http, tme.AsyncClient(http_client=http) as client:
        yield client


def unique() -> str:
    return f"async-{uuid.uuid4().hex[:10]}"


async def test_create_get_update_report_wait_delete(aclient: tme.AsyncClient) -> None:
    task = await aclient.tasks.create(name=unique(), params={"a": 1})
    assert (await aclient.tasks.get(task.id)).params == {"a": 1}
    assert (await aclient.tasks.update(task.id, assigned_to="ops")).assigned_to == "ops"
    await aclient.tasks.report(task.id, "started")
    await aclient.tasks.report(task.id, "complete", details={"ok": True})
    assert (await aclient.tasks.wait(task.id, timeout=5)).status == "succeeded"
    runs = [run async for run in aclient.tasks.runs(task.id)]
    assert (await aclient.runs.get(runs[0].id)).result == {"ok": True}
    await aclient.tasks.delete(task.id)
    with pytest.raises(NotFound):
        await aclient.tasks.get(task.id)


async def test_list_iterates_across_pages(aclient: tme.AsyncClient) -> None:
    marker = unique()
    ids = {(await aclient.tasks.create(name=f"{marker}-{i}")).id for i in range(5)}
    listed = [t.id async for t in aclient.tasks.list(search=marker, page_size=2)]
    assert sorted(listed) == sorted(ids)


async def test_wait_times_out(aclient: tme.AsyncClient) -> None:
    task = await aclient.tasks.create(name=unique())
    with pytest.raises(TimeoutError):
        await aclient.tasks.wait(task.id, timeout=0.2, poll_s=0.05)


async def test_typed_errors(aclient: tme.AsyncClient) -> None:
    key, name = uuid.uuid4().hex, unique()
    await aclient.tasks.create(name=name, idempotency_key=key)
    with pytest.raises(Conflict):
        await aclient.tasks.create(name=name + "x", idempotency_key=key)
    with pytest.raises(ValidationError) as caught:
        await aclient.tasks.create(name=name, depends_on=[{"task": 987_654}])
    assert caught.value.field_errors[0]["field"] == "depends_on.0.task"
    assert (await aclient.health())["status"] == "ok"


async def test_unreachable_server(closed_port_url: str) -> None:
    async with tme.AsyncClient(closed_port_url, timeout=2) as client:
        with pytest.raises(TransportError):
            await client.tasks.get(1)


async def test_network_failures_are_said_as_the_sync_client_says_them(
    closed_port_url: str,
) -> None:
    # The async client said "All connection attempts failed" for a refused connection
    # and "did not answer in time ()" for a timeout.
    refused = f"[Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"
    localhost = closed_port_url.replace("127.0.0.1", "localhost")
    with socket.socket() as silent:  # takes connections (its backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        expected = {
            closed_port_url: f"cannot reach TME at {closed_port_url}: {refused}",
            localhost: f"cannot reach TME at {localhost}: {refused}",
            silent_url: f"TME at {silent_url} did not answer in time (timed out)",
        }
        for url, message in expected.items():
            with tme.Client(url, timeout=0.2) as client, pytest.raises(TransportError) as sync:
                client.tasks.get(1)
            async with tme.AsyncClient(url, timeout=0.2) as aclient:
                with pytest.raises(TransportError) as caught:
                    await aclient.tasks.get(1)
            assert caught.value.message == sync.value.message == message


async def test_create_many(aclient: tme.AsyncClient) -> None:
    names = [unique(), unique()]
    made = await aclient.tasks.create_many([{"name": n} for n in names])
    assert [t.name for t in made] == names


async def test_stop_site(aclient: tme.AsyncClient, app_engine: Any) -> None:
    from rollout_fleet import publish

    publish(app_engine, "plant-a1", "skid-a", {"pump1": "pump", "tank1": "tank"})
    stopped = await aclient.fleet.stop_site("plant-a1", "flood", agent="skid-a")
    assert [(d.device, d.agent_online) for d in stopped.stopped] == [("pump1", True)]
    assert [d.device for d in stopped.not_stopped] == ["tank1"]
    assert (await aclient.runs.get(stopped.stopped[0].run_id or "")).state in {"queued", "pending"}
    with pytest.raises(NotFound):
        await aclient.fleet.stop_site("plant-a9", "flood")
