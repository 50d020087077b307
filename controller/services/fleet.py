"""Sites, agents and devices as presence reported them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from tme.controller.store.models import Agent, Device, Site
from tme.fleet_schemas import AgentPublic, DevicePublic, LinkLost, SitePublic


def list_sites(session: Session, sites_in: Sequence[str] | None = None) -> list[SitePublic]:
    """`sites_in` limits the answer to those sites (a caller's grant); None: all."""
    agents = session.exec(select(Agent)).all()
    query = select(Site).order_by(col(Site.name))
    if sites_in is not None:
        query = query.where(col(Site.name).in_(sites_in))
    sites = session.exec(query).all()
    return [
        SitePublic(
            name=site.name,
            last_seen=site.last_seen,
            agents=sum(1 for a in agents if a.site == site.name and a.role == "agent"),
            agents_online=sum(
                1 for a in agents if a.site == site.name and a.role == "agent" and a.online
            ),
        )
        for site in sites
    ]


def list_agents(
    session: Session,
    site: str | None = None,
    online: bool | None = None,
    sites_in: Sequence[str] | None = None,
) -> list[AgentPublic]:
    query = select(Agent).order_by(col(Agent.site), col(Agent.name))
    if sites_in is not None:
        query = query.where(col(Agent.site).in_(sites_in))
    if site:
        query = query.where(Agent.site == site)
    if online is not None:
        query = query.where(Agent.online == online)
    return [AgentPublic.model_validate(a) for a in session.exec(query).all()]


def list_devices(
    session: Session,
    site: str | None = None,
    agent: str | None = None,
    sites_in: Sequence[str] | None = None,
) -> list[DevicePublic]:
    query = select(Device).order_by(col(Device.site), col(Device.agent), col(Device.name))
    if sites_in is not None:
        query = query.where(col(Device.site).in_(sites_in))
    if site:
        query = query.where(Device.site == site)
    if agent:
        query = query.where(Device.agent == agent)
    devices = [DevicePublic.model_validate(d) for d in session.exec(query).all()]
    watched = [d for d in devices if d.stop_on_link_loss_s is not None and d.stopped is None]
    if watched:
        lost = _links_lost(session, {d.site for d in watched})
        for device in watched:
            device.link_lost = _link_lost(device, lost)
    return devices


def _links_lost(session: Session, sites: set[str]) -> dict[tuple[str, str], tuple[datetime, str]]:
    """(site, agent) -> since when and what the controller lost of its link: the agent
    itself offline, or else every gateway of its site (key (site, "")); missing: not lost."""
    rows = session.exec(select(Agent).where(col(Agent.site).in_(sites))).all()
    lost: dict[tuple[str, str], tuple[datetime, str]] = {}
    gateways: dict[str, list[Agent]] = {}
    for row in rows:
        if row.role == "gateway":
            gateways.setdefault(row.site, []).append(row)
        elif not row.online and (since := row.state_changed_at or row.last_seen) is not None:
            lost[(row.site, row.name)] = (since, f"agent {row.name} offline")
    for site, found in gateways.items():
        times = [g.state_changed_at or g.last_seen for g in found]
        if any(g.online for g in found) or None in times:
            continue
        names = ", ".join(sorted(g.name for g in found))
        plural = "s" if len(found) > 1 else ""
        lost[(site, "")] = (max(t for t in times if t), f"gateway{plural} {names} offline")
    return lost


def _link_lost(
    device: DevicePublic, lost: dict[tuple[str, str], tuple[datetime, str]]
) -> LinkLost | None:
    """The earlier of the agent's and its site's gateways' losses (the agent counts from
    the first link it missed)."""
    found = [lost[key] for key in ((device.site, device.agent), (device.site, "")) if key in lost]
    if not found or device.stop_on_link_loss_s is None:
        return None
    since, what = min(found)
    stops_at = since + timedelta(seconds=device.stop_on_link_loss_s)
    return LinkLost(since=since, stops_at=stops_at, what=what)
