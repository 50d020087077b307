"""client.tasks.create_many over real HTTP, sync and async: from a list or any iterable,
Task objects in order, a keyed batch replays as a whole, the same key with other tasks
is a Conflict naming the item."""

from __future__ import annotations

import uuid

import pytest

import tme
from tme.errors import Conflict
from tme.schemas import TaskCreate, TaskPublic


def _names(n: int) -> list[str]:
    marker = uuid.uuid4().hex[:8]
    return [f"many-{marker}-{i}" for i in range(n)]


def test_sync_create_many_replays_a_keyed_batch(live_url: str) -> None:
    names, key = _names(2), uuid.uuid4().hex
    tasks = [TaskCreate(name=names[0]), {"name": names[1], "target": {"site": "s1"}}]
    with tme.Client(live_url) as client:
        made = client.tasks.create_many(tasks, idempotency_key=key)
        again = client.tasks.create_many(tasks, idempotency_key=key)
        assert all(isinstance(t, TaskPublic) for t in made)
        assert [t.name for t in made] == names and made[1].target is not None
        assert [t.id for t in again] == [t.id for t in made]
        with pytest.raises(Conflict, match=r"tasks\.1") as caught:
            client.tasks.create_many([tasks[0], {"name": "other"}], idempotency_key=key)
        assert caught.value.details["index"] == 1
        assert [t.name for t in client.tasks.list(search="other")] == []


async def test_async_create_many_returns_tasks_in_order(live_url: str) -> None:
    names = _names(3)
    async with tme.AsyncClient(live_url) as client:
        made = await client.tasks.create_many({"name": n} for n in names)  # any iterable
        assert all(isinstance(t, TaskPublic) for t in made)
        assert [t.name for t in made] == names
        assert [(await client.tasks.get(t.id)).name for t in made] == names
