"""Sites, agents and devices: online or offline with last seen (from presence), whether
each device answers its agent and whether it is locked out there, and each device's
points with their latest values, refreshed when a run on it succeeds.

Every database read runs on a worker thread (a device's values scan its recent runs),
and a device's rows go to the browser again only when its values changed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from nicegui import run, ui

from tme.controller.services import fleet, point_values
from tme.controller.services.access import site_scope
from tme.controller.services.roles import Principal
from tme.fleet_schemas import (
    AgentPublic,
    DeviceLink,
    DeviceLockout,
    DevicePublic,
    DeviceValues,
    LinkLost,
    PointPublic,
    SitePublic,
    SiteStopped,
)
from tme.ui import actions, live
from tme.ui.context import dashboard
from tme.ui.control import guarded
from tme.ui.loading import OneAtATime, off_the_loop, placeholder
from tme.ui.session import Viewer
from tme.ui.text import label, name, said
from tme.ui.theme import (
    frame,
    href,
    reload_banner,
    set_chip,
    sideways,
    sign_in_first,
    state_chip,
    utc_time,
)

DeviceKey = tuple[str, str, str]  # site, agent, device


@dataclass
class Fleet:
    sites: list[SitePublic]
    agents: list[AgentPublic]
    devices: dict[DeviceKey, DevicePublic]
    values: dict[DeviceKey, DeviceValues]


def _key(device: DevicePublic) -> DeviceKey:
    return (device.site, device.agent, device.name)


def _fleet(granted: Sequence[str] | None) -> Fleet:
    """All the page shows, in one trip to a worker thread."""
    with dashboard().session() as session:
        devices = {_key(d): d for d in fleet.list_devices(session, sites_in=granted)}
        return Fleet(
            sites=fleet.list_sites(session, sites_in=granted),
            agents=fleet.list_agents(session, sites_in=granted),
            devices=devices,
            values={k: point_values.latest_values(session, d) for k, d in devices.items()},
        )


def _values(device: DevicePublic) -> DeviceValues:
    with dashboard().session() as session:
        return point_values.latest_values(session, device)


def register() -> None:
    @ui.page("/fleet")
    async def fleet_page(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        with frame("Fleet", viewer):
            body = placeholder("the fleet")
        # the API's fleet lists: the grant's sites
        found = await off_the_loop(_fleet, site_scope(viewer.principal))
        if found is None:  # the server is stopping
            return
        body.clear()
        with body:
            banner, banner_text = reload_banner("new-agents")
            sites: dict[str, ui.label] = {}
            chips = _sites_and_agents(found, sites, viewer)
            views = _devices(found, viewer)
        tables = {key: view.table for key, view in views.items()}
        shown = dict(found.values)

        new_agents: set[tuple[str, str]] = set()

        async def on_agents(changes: list[live.AgentChange]) -> None:
            # an agent (or gateway) seen for the first time, with its devices: said, not
            # drawn in among the rows
            new_agents.update(
                (c.site, c.agent)
                for c in changes
                if (c.site, c.agent) not in chips and viewer.principal.sees_site(c.site)
            )
            if new_agents:
                many = "s" if len(new_agents) > 1 else ""
                banner_text.text = f"{len(new_agents)} new agent{many} since this page opened"
                banner.set_visibility(True)
            for change in changes:
                if (change.site, change.agent) in chips:
                    chip, seen, _line = chips[(change.site, change.agent)]
                    set_chip(chip, change.state)
                    seen.text = utc_time(change.at)
            # a site's line counts its agents online and says when it was last seen
            changed = sorted({c.site for c in changes} & sites.keys())
            if changed:
                for line in await run.io_bound(_sites, changed) or []:
                    sites[line.name].text = _site_line(line)
            # a gateway's heartbeat that says something new (MQTT down, commands held)
            gateways = {(c.site, c.agent) for c in changes if c.role == "gateway"} & chips.keys()
            for site in sorted({site for site, _ in gateways}):
                for gateway in await run.io_bound(_site_agents, site) or []:
                    if (gateway.site, gateway.name) in gateways:
                        chips[(gateway.site, gateway.name)][2].text = said(gateway.status_line())
            # a presence may say a device stopped or started answering, or was locked out
            # or handed back (tme agent lock)
            agents = {(c.site, c.agent) for c in changes if c.state == "online"}
            for site, agent in sorted(agents & {(k[0], k[1]) for k in views}):
                for device in await run.io_bound(_agent_devices, site, agent) or []:
                    view = views.get(_key(device))
                    if view is not None and _status(device) != view.shown:
                        view.show_status(device)

        async def redraw(key: DeviceKey) -> None:
            values = await run.io_bound(_values, found.devices[key])
            if values is not None and values != shown.get(key):  # None: server stopping
                shown[key] = values  # only this device's rows go to the browser
                show_values(tables[key], found.devices[key], values)

        refresh = OneAtATime(redraw)  # one read at a time per device

        async def on_runs(changes: list[live.RunChange]) -> None:
            finished = {
                (c.site or "", c.agent or "", c.device or "")
                for c in changes
                if c.to_state == "succeeded" and c.op in point_values.VALUE_OPS
            }
            for key in finished & tables.keys():
                await refresh(key)

        live.agent_changes.subscribe(on_agents)
        live.run_changes.subscribe(on_runs)


def _site_agents(site: str) -> list[AgentPublic]:
    with dashboard().session() as session:
        return fleet.list_agents(session, site=site)


def _site_line(site: SitePublic) -> str:
    if site.last_seen is None:
        return name(site.name)
    return (
        f"{name(site.name)}: {site.agents_online}/{site.agents} agents online, "
        f"last seen {utc_time(site.last_seen)}"
    )


def _sites(names: list[str]) -> list[SitePublic]:
    with dashboard().session() as session:
        return fleet.list_sites(session, sites_in=names)


def _sites_and_agents(
    found: Fleet, sites: dict[str, ui.label], viewer: Viewer
) -> dict[tuple[str, str], tuple[ui.badge, ui.label, ui.label]]:
    ui.label("Sites").classes("text-lg")
    for site in found.sites:
        with ui.row().classes("items-center gap-4"):
            sites[site.name] = ui.label(_site_line(site)).mark("fleet-site")
            stoppable = any(d.site == site.name and _stoppable(d) for d in found.devices.values())
            if stoppable and viewer.can("run.control", site.name):
                _site_stop_button(viewer, site.name)
    ui.label("Agents").classes("text-lg")
    chips: dict[tuple[str, str], tuple[ui.badge, ui.label, ui.label]] = {}
    with (
        sideways(),
        ui.grid(columns="10rem 10rem 6rem 6rem 12rem 1fr").classes("items-center gap-x-4"),
    ):
        for head in ("Site", "Agent", "Role", "State", "Last seen", "Status"):
            ui.label(head).classes("font-medium text-gray-600")
        for agent in found.agents:
            ui.label(name(agent.site))
            ui.label(name(agent.name))
            ui.label(name(agent.role))
            chip = state_chip("online" if agent.online else "offline")
            seen = ui.label(utc_time(agent.last_seen) if agent.last_seen else "-")
            status = label(agent.status_line()).mark("agent-status")
            chips[(agent.site, agent.name)] = (chip, seen, status)
    return chips


# What a device's status shows: its link, lockout, stop, link-loss setting and whether
# the controller has lost its agent.
Status = tuple[
    DeviceLink | None, DeviceLockout | None, DeviceLockout | None, float | None, LinkLost | None
]


def _status(device: DevicePublic) -> Status:
    return (
        device.link,
        device.lockout,
        device.stopped,
        device.stop_on_link_loss_s,
        device.link_lost,
    )


@dataclass
class DeviceView:
    """A device's part of the page: its header, what its agent says of it (link,
    lockout) and its points."""

    header: ui.expansion
    status: ui.column
    table: ui.column
    resume: ui.button | None = None  # shown while the device is stopped
    shown: Status = (None, None, None, None, None)

    def show_status(self, device: DevicePublic) -> None:
        self.shown = (link, lockout, stopped, _, lost) = _status(device)
        title = name(f"{device.site}/{device.agent}/{device.name} ({device.profile})")
        down = " NOT ANSWERING" if link is not None and link.state == "down" else ""
        held = (" STOPPED" if stopped else "") + (" LOCKED OUT" if lockout else "")
        self.header.text = title + down + held
        if self.resume is not None:
            self.resume.visible = stopped is not None
        self.status.clear()
        with self.status:
            if stopped is not None:
                label(
                    f"Stopped by {name(stopped.by)} at {_when(stopped.at)}: {stopped.reason}. Its"
                    " agent refuses writes and changing commands until it is resumed; reads"
                    " still run."
                ).classes("text-negative font-medium").mark("device-stopped")
            if link is not None and link.state == "down":
                label(f"Not answering its agent since {_when(link.since)}: {link.error}").classes(
                    "text-negative font-medium"
                ).mark("device-link")
            elif link is not None:
                ui.label(f"Answering its agent since {_when(link.since)}").classes(
                    "text-sm text-gray-600"
                ).mark("device-link")
            if device.stop_on_link_loss_s is not None:
                ui.label(
                    f"Its agent stops it (its safe values, until it is resumed) after"
                    f" {device.stop_on_link_loss_s:g} s without the link to the controller."
                ).classes("text-sm text-gray-600").mark("device-link-loss")
            if lost is not None:
                ui.label(f"Link lost: {lost.line()}.").classes("text-negative font-medium").mark(
                    "device-link-lost"
                )
            if lockout is not None:
                label(
                    f"Locked out at its agent by {name(lockout.by)} since {_when(lockout.at)}: "
                    f"{lockout.reason}. The agent refuses writes and changing commands until "
                    "it is unlocked there (tme agent unlock); reads still run."
                ).classes("text-negative font-medium").mark("device-lockout")


def _stoppable(device: DevicePublic) -> bool:
    """Whether a stop would write anything: a point with a safe value."""
    return any(p.safe_value is not None for p in device.points)


ASKS = {
    "stop": (
        "Stop {name} now? Its unfinished runs are canceled and its agent writes its safe"
        " values, then refuses its changes until it is resumed."
    ),
    "resume": "Resume {name}? Its agent takes its changes again (nothing is written).",
}


def _ask_button(viewer: Viewer, device: DevicePublic, action: str) -> ui.button:
    """Stop or resume the device (as POST /api/v1/devices/{device}/stop or /resume),
    after asking why; the run that does it opens."""

    def opened(run_id: object) -> None:
        ui.navigate.to(f"/runs/{run_id}")

    return _reason_button(
        viewer,
        device.site,
        f"{action.capitalize()} {name(device.name)}",
        ASKS[action].format(name=name(device.name)),
        action,
        (f"{action}-device", f"{action}-reason", f"confirm-{action}"),
        lambda principal, reason: actions.stop_device(principal, device, reason, action),
        opened,
    )


def _site_stop_button(viewer: Viewer, site: str) -> ui.button:
    """Stop every device of the site with safe values (as POST /api/v1/sites/{site}/stop),
    after asking why; what it stopped and left alone is said."""
    question = (
        f"Stop every device of site {name(site)} now? Each device with safe values is"
        " stopped: its unfinished runs are canceled and its agent writes its safe values,"
        " then refuses its changes until it is resumed."
    )
    return _reason_button(
        viewer,
        site,
        f"Stop site {name(site)}",
        question,
        "stop",
        ("stop-site", "stop-site-reason", "confirm-stop-site"),
        lambda principal, reason: actions.stop_site(principal, site, reason),
        _said_site_stop,
    )


def _said_site_stop(stopped: object) -> None:
    """What a site's stop did, in a notification (the devices' stops then show on this
    page as their agents report them)."""
    assert isinstance(stopped, SiteStopped)
    names = ", ".join(f"{d.agent}/{d.device}" for d in stopped.stopped)
    left = ", ".join(f"{d.agent}/{d.device}" for d in stopped.not_stopped)
    text = f"stopping {len(stopped.stopped)} device(s) of {stopped.site}: {names}"
    if left:
        text += f"; left alone (no safe value): {left}"
    ui.notify(said(text), type="positive", multi_line=True)
    offline = [f"{d.agent}/{d.device}" for d in stopped.stopped if not d.agent_online]
    if offline:
        ui.notify(
            said(
                f"agent offline: {', '.join(offline)}: its stop waits for it at most a minute,"
                " then fails as not delivered: stop it another way"
            ),
            type="negative",
            multi_line=True,
            timeout=0,
            close_button="OK",
        )


def _reason_button(
    viewer: Viewer,
    site: str,
    words: str,
    question: str,
    action: str,
    marks: tuple[str, str, str],
    act: Callable[[Principal, str], object],
    then: Callable[[object], None],
) -> ui.button:
    """A button that asks `question` and why (kept with the `action`), then does `act`
    with who asked and why, guarded by run.control on `site`; `marks`: the button's, the
    reason's and the confirming button's."""
    button_mark, reason_mark, confirm_mark = marks

    def ask() -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(question)
            reason = ui.input("Why").props("autofocus maxlength=200").mark(reason_mark)
            do = guarded(
                viewer,
                "run.control",
                site,
                lambda principal: act(principal, reason.value or ""),
                then=then,
            )

            def confirmed() -> None:
                if not (reason.value or "").strip():
                    ui.notify(f"say why: it is kept with the {action}")
                    return
                dialog.close()
                do()

            with ui.row():
                ui.button("Back", on_click=dialog.close).props("flat")
                ui.button(action.capitalize(), color="negative", on_click=confirmed).mark(
                    confirm_mark
                )
        dialog.open()

    color = "negative" if action == "stop" else "primary"
    return ui.button(words, color=color, on_click=ask).mark(button_mark)


def _when(iso: str) -> str:
    """An agent's ISO 8601 time as the page shows times (as it was, if unreadable)."""
    try:
        return utc_time(datetime.fromisoformat(iso))
    except ValueError:
        return said(iso)


def _devices(found: Fleet, viewer: Viewer) -> dict[DeviceKey, DeviceView]:
    ui.label("Devices").classes("text-lg")
    views: dict[DeviceKey, DeviceView] = {}
    for key, device in found.devices.items():
        with ui.expansion(value=True).classes("w-full") as header:
            resume = None
            if viewer.can("run.control", device.site) and _stoppable(device):
                with ui.row().classes("gap-2"):
                    _ask_button(viewer, device, "stop")
                    resume = _ask_button(viewer, device, "resume")
            view = DeviceView(header, ui.column(), ui.column().classes("w-full"), resume)
        view.show_status(device)
        show_values(view.table, device, found.values[key])
        views[key] = view
    return views


def _agent_devices(site: str, agent: str) -> list[DevicePublic]:
    with dashboard().session() as session:
        return fleet.list_devices(session, site=site, agent=agent)


def show_values(table: ui.element, device: DevicePublic, values: DeviceValues) -> None:
    """The device's points: latest value with unit, when and from which run, and limits."""
    described = {p.name: p for p in device.points}
    table.clear()
    with (
        table,
        sideways(),
        ui.grid(columns="12rem 8rem 4rem 11rem 6rem 1fr").classes("items-center gap-x-4 text-sm"),
    ):
        for head in ("Point", "Value", "Unit", "When", "Run", "Type"):
            ui.label(head).classes("font-medium text-gray-600")
        for point in values.points:
            spec = described.get(point.name)
            ui.label(name(point.name))
            label(point.shown()).classes("point-value")
            ui.label(name(point.unit or ""))
            ui.label(utc_time(point.at) if point.at else "")
            if point.run_id:
                ui.link(point.run_id[:8], href(f"/runs/{point.run_id}"))
            else:
                ui.label("")
            label(_describe(spec) if spec is not None else "")


def _describe(point: PointPublic) -> str:
    """Type, access and limits: a point's range, a serial command's arguments."""
    limits = point.limits()
    if limits and point.kind == "command":
        limits = f"args {limits}"
    elif limits and (point.min is not None or point.max is not None):
        limits = f"range {limits}"
    needs = f", needs {point.needs()}" if point.interlocks else ""
    return f"{point.type or ''} {point.access or ''} {limits}".strip() + needs
