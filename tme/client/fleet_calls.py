"""The requests of the fleet (sites, agents, devices, their values, stopping them), as
the sync and async clients send them (tme.client.calls says how a call is made)."""

from __future__ import annotations

from typing import Any

from tme.client.calls import API, Call, _list_of, _parser, _path_name
from tme.fleet_schemas import (
    AgentPublic,
    DevicePublic,
    DeviceStopped,
    DeviceValues,
    SitePublic,
    SiteStopped,
)
from tme.schemas import check_name


def list_sites() -> Call[list[SitePublic]]:
    return Call("GET", f"{API}/sites", _list_of(SitePublic))


def list_agents(site: str | None = None, online: bool | None = None) -> Call[list[AgentPublic]]:
    params: dict[str, Any] = {"site": site, "online": online}
    return Call(
        "GET",
        f"{API}/agents",
        _list_of(AgentPublic),
        params={k: v for k, v in params.items() if v is not None},
    )


def _where(site: str | None, agent: str | None) -> dict[str, str]:
    """The site and agent filters given (a device's namesakes told apart by them)."""
    return {k: v for k, v in (("site", site), ("agent", agent)) if v is not None}


def list_devices(site: str | None = None, agent: str | None = None) -> Call[list[DevicePublic]]:
    return Call(
        "GET",
        f"{API}/devices",
        _list_of(DevicePublic),
        params=_where(site, agent),
    )


def stop_device(
    name: str, reason: str, site: str | None = None, agent: str | None = None, action: str = "stop"
) -> Call[DeviceStopped]:
    """POST .../stop, or with `action` "resume", .../resume."""
    return Call(
        "POST",
        f"{API}/devices/{_path_name(name, 'device', check_name)}/{action}",
        _parser(DeviceStopped),
        params=_where(site, agent),
        json={"reason": reason},
    )


def stop_site(site: str, reason: str, agent: str | None = None) -> Call[SiteStopped]:
    """POST /sites/{site}/stop (of `agent`'s devices only, when given)."""
    return Call(
        "POST",
        f"{API}/sites/{_path_name(site, 'site', check_name)}/stop",
        _parser(SiteStopped),
        params=_where(None, agent),
        json={"reason": reason},
    )


def device_values(
    name: str, site: str | None = None, agent: str | None = None
) -> Call[DeviceValues]:
    return Call(
        "GET",
        f"{API}/devices/{_path_name(name, 'device', check_name)}/values",
        _parser(DeviceValues),
        params=_where(site, agent),
    )
