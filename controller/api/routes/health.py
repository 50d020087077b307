"""/healthz (alive, checks nothing) and /readyz (can serve now, else 503); both public."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tme.controller.api.errors import error_response
from tme.controller.readiness import Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Answered on the event loop, never on a worker thread: requests waiting on a
    database that stopped answering can hold every thread for database.tcp_timeout_s,
    and a liveness probe queued behind them would have the orchestrator restart a
    controller that only waits for its database."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "A check is failing"}})
def readyz(request: Request) -> JSONResponse:
    """Each check ("database", "schema", "broker") with "ok" or a short reason; 503
    when one fails. Why it fails in full is in the controller's log."""
    readiness: Readiness = request.app.state.readiness
    results = readiness.run()
    if all(v == "ok" for v in results.values()):
        return JSONResponse({"status": "ready", "checks": results})
    return error_response(503, "not_ready", "a check is failing", results)
