"""/api/v1/sites, /api/v1/agents, /api/v1/devices: the fleet as presence reports it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from tme.controller.api.deps import PrincipalDep, SessionDep
from tme.controller.services import fleet
from tme.controller.services.access import site_scope
from tme.schemas import AgentPublic, DevicePublic, SitePublic

router = APIRouter(prefix="/api/v1", tags=["fleet"])

SiteQuery = Annotated[str | None, Query(max_length=64)]


@router.get("/sites", response_model=list[SitePublic])
def list_sites(session: SessionDep, principal: PrincipalDep) -> list[SitePublic]:
    return fleet.list_sites(session, sites_in=site_scope(principal))


@router.get("/agents", response_model=list[AgentPublic])
def list_agents(
    session: SessionDep,
    principal: PrincipalDep,
    site: SiteQuery = None,
    online: bool | None = None,
) -> list[AgentPublic]:
    return fleet.list_agents(session, site=site, online=online, sites_in=site_scope(principal))


@router.get("/devices", response_model=list[DevicePublic])
def list_devices(
    session: SessionDep,
    principal: PrincipalDep,
    site: SiteQuery = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
) -> list[DevicePublic]:
    return fleet.list_devices(session, site=site, agent=agent, sites_in=site_scope(principal))
