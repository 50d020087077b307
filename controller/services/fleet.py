"""Sites, agents and devices as presence reported them."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session, col, select

from tme.controller.store.models import Agent, Device, Site
from tme.fleet_schemas import AgentPublic, DevicePublic, SitePublic


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
    return [DevicePublic.model_validate(d) for d in session.exec(query).all()]
