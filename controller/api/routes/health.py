"""/healthz (alive, checks nothing) and /readyz (can serve now, else 503); both public."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
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
    when one fails. Why it fails in full is in the controller's log. A ready answer
    also says this controller's `role` among those sharing its database: `leader`
    (it schedules, publishes commands and sends notifications) or `standby` (it serves
    the API and the dashboard, and takes over when the leader stops). Both are ready:
    a load balancer sends requests to either."""
    readiness: Readiness = request.app.state.readiness
    results = readiness.run()
    if all(v == "ok" for v in results.values()):
        body: dict[str, object] = {"status": "ready", "checks": results}
        runtime = request.app.state.runtime
        if runtime is not None:
            body["role"] = "leader" if runtime.scheduling.holds_lease else "standby"
        return JSONResponse(body)
    return error_response(503, "not_ready", "a check is failing", results)


# HEAD too, as GET answers it (a body is never sent): a probe or uptime monitor asking
# HEAD, the default of many, got 401, the answer to a request no policy makes public.
# Left out of the OpenAPI document, which would hold each operation twice.
@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return Response()


@router.head("/readyz", include_in_schema=False)
def readyz_head(request: Request) -> JSONResponse:
    return readyz(request)
