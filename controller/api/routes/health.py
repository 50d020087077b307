"""/healthz (alive, checks nothing) and /readyz (dependencies reachable, else 503)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tme.controller.api.errors import error_response

router = APIRouter(tags=["health"])

ReadinessCheck = Callable[[], None]  # raises when its dependency is not reachable


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answered on the event loop, never on a worker thread: requests waiting on a
    database that stopped answering can hold every thread for database.tcp_timeout_s,
    and a liveness probe queued behind them would have the orchestrator restart a
    controller that only waits for its database."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    checks: dict[str, ReadinessCheck] = {"database": lambda: _ping_db(request)}
    checks.update(getattr(request.app.state, "readiness_checks", {}))
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means not ready; the reason is reported
            results[name] = f"error: {exc.__class__.__name__}: {exc}"[:300]
    if all(v == "ok" for v in results.values()):
        return JSONResponse({"status": "ready", "checks": results})
    return error_response(503, "not_ready", "a dependency is not reachable", results)


def _ping_db(request: Request) -> None:
    with request.app.state.engine.connect() as connection:
        connection.execute(text("SELECT 1"))
