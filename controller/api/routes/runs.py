"""/api/v1/runs/<id>: one run with its state transitions and log."""

from __future__ import annotations

from fastapi import APIRouter, Request

from tme.controller.api.deps import RunId, SessionDep
from tme.controller.services.queries import get_run_detail
from tme.schemas import RunDetail

router = APIRouter(prefix="/api/v1", tags=["runs"])


@router.get("/runs/{run_id}", response_model=RunDetail)
def get_run(request: Request, run_id: RunId, session: SessionDep) -> RunDetail:
    return get_run_detail(session, run_id, request.app.state.settings.notifications.slow)
