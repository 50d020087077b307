"""/api/v1/sites, /api/v1/agents, /api/v1/devices: the fleet as presence reports it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tme.controller.api.deps import SessionDep
from tme.controller.services import fleet
from tme.schemas import AgentPublic, DevicePublic, SitePublic

router = APIRouter(prefix="/api/v1", tags=["fleet"])

SiteQuery = Annotated[str | None, Query(max_length=64)]


@router.get("/sites", response_model=list[SitePublic])
def list_sites(session: SessionDep) -> list[SitePublic]:
    return fleet.list_sites(session)


@router.get("/agents", response_model=list[AgentPublic])
def list_agents(
    session: SessionDep, site: SiteQuery = None, online: bool | None = None
) -> list[AgentPublic]:
    return fleet.list_agents(session, site=site, online=online)


@router.get("/devices", response_model=list[DevicePublic])
def list_devices(
    session: SessionDep,
    site: SiteQuery = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
) -> list[DevicePublic]:
    return fleet.list_devices(session, site=site, agent=agent)
