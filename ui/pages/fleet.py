"""Sites, agents and devices: online or offline with last seen (from presence), and
each device's points."""

from __future__ import annotations

from fastapi import Request
from nicegui import ui

from tme.controller.services import fleet
from tme.ui import live
from tme.ui.context import dashboard
from tme.ui.theme import frame, set_chip, sign_in_first, state_chip


def register() -> None:
    @ui.page("/fleet")
    def fleet_page(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        sees = viewer.principal.sees_site
        with dashboard().session() as session:
            sites = [s for s in fleet.list_sites(session) if sees(s.name)]
            agents = [a for a in fleet.list_agents(session) if sees(a.site)]
            devices = [d for d in fleet.list_devices(session) if sees(d.site)]
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
            for device in devices:
                with ui.expansion(f"{device.site}/{device.agent}/{device.name} ({device.driver})"):
                    for point in device.points:
                        ui.label(
                            f"{point.name}: {point.type or ''} {point.unit or ''}"
                            f" {point.access or ''}"
                            + (f" range {point.min}..{point.max}" if point.max is not None else "")
                        ).classes("text-sm")

        def on_agents(changes: list[live.AgentChange]) -> None:
            for change in changes:
                if (change.site, change.agent) in chips:
                    chip, seen = chips[(change.site, change.agent)]
                    set_chip(chip, change.state)
                    seen.text = f"{change.at:%Y-%m-%d %H:%M:%S}"

        live.agent_changes.subscribe(on_agents)
