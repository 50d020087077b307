"""client.tasks.resources() over real HTTP, sync and async: each exclusive resource with
the run holding it and the runs waiting for it."""

from __future__ import annotations

import tme
from tme.schemas import ResourcePublic


def test_the_sdk_lists_resources_with_their_holder_and_waiters(live_url: str) -> None:
    with tme.Client(live_url) as client:
        hold = client.tasks.create(name="hold", op="external", resources=["press-2"])
        wait = client.tasks.create(name="wait", op="external", resources=["press-2"])
        (press,) = [r for r in client.tasks.resources() if r.name == "press-2"]
    assert isinstance(press, ResourcePublic)
    assert press.holder is not None and press.holder.run_id == hold.latest_run_id
    assert [w.run_id for w in press.waiting] == [wait.latest_run_id]


async def test_the_async_sdk_lists_resources(live_url: str) -> None:
    async with tme.AsyncClient(live_url) as client:
        made = await client.tasks.create(name="hold", op="external", resources=["press-3"])
        listed = await client.tasks.resources()
    assert [(r.name, r.holder.task_id if r.holder else None) for r in listed] == [
        ("press-3", made.id)
    ]
