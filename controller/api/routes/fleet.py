"""/api/v1/sites, /api/v1/agents, /api/v1/devices: the fleet as presence reports it;
/api/v1/devices/{device}/values: each point's latest value from succeeded runs;
POST /api/v1/devices/{device}/stop and /resume: stop it now, latched at its agent, and
lift that; POST /api/v1/sites/{site}/stop: stop every device of a site at once
(controller/services/device_stop.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path

from tme.controller.api.change_commit import ChangeCommit, ChangeDep
from tme.controller.api.deps import NameFilter, PrincipalDep, RunReadyDep, SessionDep
from tme.controller.services import device_stop, fleet, point_values
from tme.controller.services.access import site_scope
from tme.controller.services.roles import Principal
from tme.controller.services.runs import RunReadyHook
from tme.controller.store.models import Device
from tme.fleet_schemas import (
    AgentPublic,
    DevicePublic,
    DeviceStop,
    DeviceStopped,
    DeviceValues,
    SitePublic,
    SiteStop,
    SiteStopped,
)

router = APIRouter(prefix="/api/v1", tags=["fleet"])

SiteQuery = NameFilter
AgentQuery = NameFilter
DeviceName = Annotated[str, Path(min_length=1, max_length=64, description="The device's name")]
SiteName = Annotated[str, Path(min_length=1, max_length=64, description="The site's name")]
FLEET_READ = {"x-permission": "fleet.read"}
STOP = {"x-permission": "run.control"}  # whoever may cancel runs may stop a machine


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
    agent: AgentQuery = None,
) -> list[DevicePublic]:
    return fleet.list_devices(session, site=site, agent=agent, sites_in=site_scope(principal))


@router.post(
    "/devices/{device}/stop", status_code=201, response_model=DeviceStopped, openapi_extra=STOP
)
def stop(
    device: DeviceName,
    body: DeviceStop,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
    site: SiteQuery = None,
    agent: AgentQuery = None,
) -> DeviceStopped:
    """Stop the device now: cancel its unfinished runs and start a task whose run has its
    agent cancel whatever waits for the device there and write its profile's safe values;
    the agent then refuses its changes until it is resumed (docs/api.md, "Stopping a
    device")."""
    found = point_values.find_device(
        session, device, site=site, agent=agent, sites_in=site_scope(principal)
    )
    return _committed(change, device_stop.stop_device, found, body, principal, on_run_ready)


@router.post(
    "/devices/{device}/resume", status_code=201, response_model=DeviceStopped, openapi_extra=STOP
)
def resume(
    device: DeviceName,
    body: DeviceStop,
    session: SessionDep,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
    site: SiteQuery = None,
    agent: AgentQuery = None,
) -> DeviceStopped:
    """Lift a stop: the device's agent takes its changes again (nothing is written)."""
    found = point_values.find_device(
        session, device, site=site, agent=agent, sites_in=site_scope(principal)
    )
    return _committed(change, device_stop.resume_device, found, body, principal, on_run_ready)


@router.post("/sites/{site}/stop", status_code=201, response_model=SiteStopped, openapi_extra=STOP)
def stop_site(
    site: SiteName,
    body: SiteStop,
    change: ChangeDep,
    principal: PrincipalDep,
    on_run_ready: RunReadyDep,
    agent: AgentQuery = None,
) -> SiteStopped:
    """Stop every device of the site (of `agent` only, when given) that has a safe value
    to write, at once: as a device's stop each (in one transaction, every stop before any
    cancel); the answer names each device stopped, with its stop's run and whether its
    agent is online, and those left alone with why (docs/api.md, "Stopping a site")."""
    answer = device_stop.stop_site(
        change.session,
        site,
        agent,
        body.reason,
        principal.username,
        on_run_ready,
        sites_in=site_scope(principal),  # a site outside the grant has no device for them
    )
    change.commit(201)
    return answer


def _committed(
    change: ChangeCommit,
    action: Callable[..., DeviceStopped],
    found: Device,
    body: DeviceStop,
    principal: Principal,
    on_run_ready: RunReadyHook | None,
) -> DeviceStopped:
    answer = action(change.session, found, body.reason, principal.username, on_run_ready)
    change.commit(201)
    return answer


@router.get("/devices/{device}/values", response_model=DeviceValues, openapi_extra=FLEET_READ)
def device_values(
    device: DeviceName,
    session: SessionDep,
    principal: PrincipalDep,
    site: SiteQuery = None,
    agent: AgentQuery = None,
) -> DeviceValues:
    """Each point of the device with its latest value (value, unit, when, which run).

    A device on another site than the caller's grant does not exist for them (404);
    `site` and `agent` pick one device when several agents have one of that name.
    """
    found = point_values.find_device(
        session, device, site=site, agent=agent, sites_in=site_scope(principal)
    )
    return point_values.latest_values(session, found)
