"""/api/v1/runs/<id>: one run with its state transitions and log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from tme.controller.api.deps import SessionDep
from tme.controller.services.queries import get_run_detail

from tme.schemas import RunDetail

router = APIRouter(prefix="/api/v1", tags=["runs"])

RunId = Annotated[str, Path(min_length=1, max_length=64, description="The run's id")]


@router.get("/runs/{run_id}", response_model=RunDetail)
def get_run(run_id: RunId, session: SessionDep) -> RunDetail:
    return get_run_detail(session, run_id)
