"""/healthz and /readyz as an orchestrator uses them: without a token, answered
whatever the database does, and saying nothing an anonymous caller should not read."""

from __future__ import annotations

import asyncio

import anyio.to_thread
import httpx
from fastapi import FastAPI


async def test_liveness_answers_while_every_worker_thread_is_taken(app: FastAPI) -> None:
    """Requests stuck on a database that stopped answering hold every thread of the pool
    for up to database.tcp_timeout_s; a liveness probe waiting behind them fails, and
    the orchestrator restarts a controller that only waits for its database."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    holders = [object() for _ in range(int(limiter.total_tokens))]
    for holder in holders:
        await limiter.acquire_on_behalf_of(holder)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tme") as client:
            answer = await asyncio.wait_for(client.get("/healthz"), timeout=10)
    finally:
        for holder in holders:
            limiter.release_on_behalf_of(holder)
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}

