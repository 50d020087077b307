"""Sites, agents and devices: online or offline with last seen (from presence), and
each device's points with their latest values, refreshed when a run on it succeeds."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from nicegui import ui

from tme.controller.services import fleet, point_values
from tme.controller.services.access import site_scope
from tme.schemas import DevicePublic
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.theme import frame, href, set_chip, sign_in_first, state_chip


def register() -> None:
    @ui.page("/fleet")
    def fleet_page(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        granted = site_scope(viewer.principal)  # the API's fleet lists: the grant's sites
        with dashboard().session() as session:
            sites = fleet.list_sites(session, sites_in=granted)
            agents = fleet.list_agents(session, sites_in=granted)
            devices = fleet.list_devices(session, sites_in=granted)
        chips: dict[tuple[str, str], tuple[ui.badge, ui.label]] = {}
        with frame("Fleet", viewer):
            ui.label("Sites").classes("text-lg")
            for site in sites:
                ui.label(
                    f"{site.name}: {site.agents_online}/{site.agents} agents online, "
                    f"last seen {site.last_seen:%Y-%m-%d %H:%M:%S}"
                    if site.last_seen
                    else site.name
                )
            ui.label("Agents").classes("text-lg")
            with ui.grid(columns="10rem 10rem 6rem 6rem 1fr").classes("items-center gap-x-4"):
                for head in ("Site", "Agent", "Role", "State", "Last seen"):
                    ui.label(head).classes("font-medium text-gray-600")
                for agent in agents:
                    ui.label(agent.site)
                    ui.label(agent.name)
                    ui.label(agent.role)
                    chip = state_chip("online" if agent.online else "offline")
                    seen = ui.label(
                        f"{agent.last_seen:%Y-%m-%d %H:%M:%S}" if agent.last_seen else "-"
                    )
                    chips[(agent.site, agent.name)] = (chip, seen)
            ui.label("Devices").classes("text-lg")
            tables: dict[tuple[str, str, str], ui.element] = {}
            for device in devices:
                title = f"{device.site}/{device.agent}/{device.name} ({device.profile})"
                with ui.expansion(title, value=True).classes("w-full"):
                    tables[(device.site, device.agent, device.name)] = ui.column().classes("w-full")
                show_values(tables[(device.site, device.agent, device.name)], device)

        def on_agents(changes: list[live.AgentChange]) -> None:
            for change in changes:
                if (change.site, change.agent) in chips:
                    chip, seen = chips[(change.site, change.agent)]
                    set_chip(chip, change.state)
                    seen.text = f"{change.at:%Y-%m-%d %H:%M:%S}"

        def on_runs(changes: list[live.RunChange]) -> None:
            finished = {
                (c.site, c.agent, c.device)
                for c in changes
                if c.to_state == "succeeded" and c.op in point_values.VALUE_OPS
            }
            for site, agent, name in finished:
                table = tables.get((site or "", agent or "", name or ""))
                found = next(
                    (d for d in devices if (d.site, d.agent, d.name) == (site, agent, name)), None
                )
                if table is not None and found is not None:
                    show_values(table, found)  # only this device's rows go to the browser

        live.agent_changes.subscribe(on_agents)
        live.run_changes.subscribe(on_runs)


def show_values(table: ui.element, device: DevicePublic) -> None:
    """The device's points: latest value with unit, when and from which run, and limits."""
    with dashboard().session() as session:
        values = point_values.latest_values(session, device)
    described = {p.name: p for p in device.points}
    table.clear()
    with (
        table,
        ui.grid(columns="12rem 8rem 4rem 11rem 6rem 1fr").classes("items-center gap-x-4 text-sm"),
    ):
        for head in ("Point", "Value", "Unit", "When", "Run", "Type"):
            ui.label(head).classes("font-medium text-gray-600")
        for point in values.points:
            spec = described.get(point.name)
            ui.label(point.name)
            ui.label("-" if point.value is None else str(point.value)).classes("point-value")
            ui.label(point.unit or "")
            ui.label(f"{point.at:%Y-%m-%d %H:%M:%S}" if point.at else "")
            if point.run_id:
                ui.link(point.run_id[:8], href(f"/runs/{point.run_id}"))
            else:
                ui.label("")
            ui.label(_describe(spec) if spec is not None else "")


def _describe(point: Any) -> str:
    limits = f" range {point.min}..{point.max}" if point.max is not None else ""
    return f"{point.type or ''} {point.access or ''}{limits}".strip()
