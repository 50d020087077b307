"""The agent's priority lock and semaphore: waiters go higher priority first, then in the
order they came; a holder is never interrupted; a waiter cancelled at any moment loses
no permit and holds up nobody."""

from __future__ import annotations

import asyncio

import pytest
from waiting import wait_until_async

from tme.agents.priority_lock import PriorityLock, PrioritySemaphore


async def _queue(
    lock: PrioritySemaphore, priorities: dict[str, int], order: list[str]
) -> dict[str, asyncio.Task[None]]:
    """A task per name, each waiting for `lock` at its priority (in the dict's order),
    noting its name in `order` once it holds the lock, then releasing it."""

    async def take(name: str, priority: int) -> None:
        async with lock.at(priority):
            order.append(name)

    tasks = {}
    for name, priority in priorities.items():
        tasks[name] = asyncio.create_task(take(name, priority))
        await wait_until_async(lambda n=len(tasks): lock.waiting == n, what=f"{name} waiting")
    return tasks


async def test_waiters_go_higher_priority_first_then_in_the_order_they_came() -> None:
    lock, order = PriorityLock(), []
    await lock.acquire(1)  # the holder: a low priority one, never interrupted
    tasks = await _queue(lock, {"meters": 1, "level": 5, "more": 1, "inlet": 9, "flow": 5}, order)
    assert order == [] and lock.locked()
    lock.release()
    await asyncio.gather(*tasks.values())
    assert order == ["inlet", "level", "flow", "meters", "more"]
    assert not lock.locked()


async def test_a_free_lock_is_taken_at_once_whatever_the_priority() -> None:
    lock = PriorityLock()
    async with lock.at(0):
        assert lock.locked() and lock.waiting == 0
    async with lock:  # the default priority, as asyncio.Lock is used
        assert lock.locked()
    assert not lock.locked()


async def test_a_semaphore_lets_its_permits_go_by_priority() -> None:
    workers, order = PrioritySemaphore(2), []
    await workers.acquire()
    await workers.acquire()
    tasks = await _queue(workers, {"low": 1, "high": 9, "mid": 5}, order)
    workers.release()  # one permit free: each waiter takes it in turn and hands it on
    await asyncio.gather(*tasks.values())
    assert order == ["high", "mid", "low"]
    assert workers.locked() is False and workers.waiting == 0
    await workers.acquire()
    assert workers.locked()  # the other permit is still held


async def test_a_cancelled_waiter_is_passed_over() -> None:
    lock, order = PriorityLock(), []
    await lock.acquire()
    tasks = await _queue(lock, {"low": 1, "high": 9}, order)
    tasks["high"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks["high"]
    assert lock.waiting == 1
    lock.release()
    await tasks["low"]
    assert order == ["low"] and not lock.locked()


async def test_a_waiter_cancelled_as_it_is_handed_the_lock_hands_it_on() -> None:
    """The release chose it, but it was cancelled before it could run: the lock goes to
    the next waiter, not lost (else every later acquire would wait forever)."""
    lock, order = PriorityLock(), []
    await lock.acquire()
    tasks = await _queue(lock, {"high": 9, "low": 1}, order)
    lock.release()  # hands it to "high" ...
    tasks["high"].cancel()  # ... cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await tasks["high"]
    await tasks["low"]
    assert order == ["low"] and not lock.locked()


async def test_a_cancelled_waiter_whose_entry_a_release_dropped_leaves_quietly() -> None:
    lock, order = PriorityLock(), []
    await lock.acquire()
    tasks = await _queue(lock, {"high": 9, "low": 1}, order)
    tasks["high"].cancel()  # cancelled, then a release passes over it before it runs
    lock.release()
    with pytest.raises(asyncio.CancelledError):
        await tasks["high"]
    await tasks["low"]
    assert order == ["low"] and not lock.locked() and lock.waiting == 0


def test_a_semaphore_needs_a_permit() -> None:
    with pytest.raises(ValueError, match="at least one permit"):
        PrioritySemaphore(0)
