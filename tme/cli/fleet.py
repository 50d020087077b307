"""`tme agent list`, `tme device list`, `tme site list`: the fleet as presence reports it;
`tme device values NAME`: each point's latest value; `tme device stop NAME`: stop it now
(latched at its agent) and `tme device resume NAME`: lift that."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated

import typer
from rich.markup import escape

from tme.cli.common import (
    JsonOption,
    TimeoutOption,
    TokenOption,
    UrlOption,
    WaitOption,
    connect,
)
from tme.cli.device_stop import Stop, answer_text, follow_site_stop, follow_stop, stop_failed
from tme.cli.output import console, print_json, print_table
from tme.client.base import check_seconds, is_final
from tme.fleet_schemas import DevicePublic, DeviceStopped, SiteStopped
from tme.schemas import RunPublic

device_app = typer.Typer(no_args_is_help=True)
site_app = typer.Typer(no_args_is_help=True)

SiteFilter = Annotated[str | None, typer.Option("--site", help="Only this site.")]


def list_agents(
    site: SiteFilter = None,
    online: Annotated[
        bool | None, typer.Option("--online/--offline", help="Filter by state.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List agents and gateways with their online state, last seen time and, for a
    gateway, what its last heartbeat said (links, commands held)."""
    with connect(url, token) as client:
        agents = client.fleet.agents(site=site, online=online)
    if as_json:
        print_json([a.model_dump(mode="json") for a in agents])
        return
    rows = [
        (a.site, a.name, a.role, "online" if a.online else "offline", a.last_seen, a.status_line())
        for a in agents
    ]
    print_table("Agents", ["site", "name", "role", "state", "last seen", "status"], rows)


@device_app.command("list")
def list_devices(
    site: SiteFilter = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent.")] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List devices with their points and serial commands (type, unit, access, limits:
    a point's min..max, each command argument's type with its min..max, choices or
    pattern, as the agent enforces them; a point's step limit, safe value and min
    interval between changes); then the interlocks, the devices not answering their
    agents, those their agents stop on link loss, those stopped and those locked out at
    them, if any."""
    with connect(url, token) as client:
        devices = client.fleet.devices(site=site, agent=agent)
    if as_json:
        print_json([d.model_dump(mode="json") for d in devices])
        return
    rows = [
        (d.site, d.agent, d.name, p.name, p.kind, p.type, p.unit, p.access, p.limits())
        for d in devices
        for p in d.points
    ]
    print_table(
        "Device points",
        ["site", "agent", "device", "point", "kind", "type", "unit", "access", "limits"],
        rows,
    )
    guarded = [(d, p) for d in devices for p in d.points if p.interlocks]
    if guarded:  # read by the agent just before each change they guard
        print_table(
            "Interlocks (read by the agent just before each change; refused: rejected)",
            ["site", "agent", "device", "point", "needs"],
            [(d.site, d.agent, d.name, p.name, p.needs()) for d, p in guarded],
        )
    down = [(d.site, d.agent, d.name, d.link) for d in devices if d.link and d.link.state == "down"]
    if down:  # as their agents last said: an operation found no connection or no answer
        print_table(
            "Not answering their agents",
            ["site", "agent", "device", "since", "error"],
            [(site, agent, name, ln.since, ln.error) for site, agent, name, ln in down],
        )
    watched = [d for d in devices if d.stop_on_link_loss_s is not None]
    if watched:  # their agents stop them on their own when the site loses the controller
        print_table(
            "Stopped by their agents on link loss",
            ["site", "agent", "device", "after no link to the controller for", "now"],
            [
                (d.site, d.agent, d.name, f"{d.stop_on_link_loss_s:g} s", _link_now(d))
                for d in watched
            ],
        )
    stopped = [(d.site, d.agent, d.name, d.stopped) for d in devices if d.stopped is not None]
    if stopped:  # their agents refuse their changes until tme device resume
        print_table(
            "Stopped (changes refused until tme device resume)",
            ["site", "agent", "device", "by", "at", "reason"],
            [(site, agent, name, s.by, s.at, s.reason) for site, agent, name, s in stopped],
        )
    locked = [(d.site, d.agent, d.name, d.lockout) for d in devices if d.lockout is not None]
    if locked:  # the agent refuses their writes until someone unlocks them there
        print_table(
            "Locked out at their agents (writes refused; tme agent unlock ends it)",
            ["site", "agent", "device", "by", "since", "reason"],
            [(site, agent, name, lo.by, lo.at, lo.reason) for site, agent, name, lo in locked],
        )


def _link_now(device: DevicePublic) -> str:
    """Whether the controller has lost the device's agent, and when the agent stops it."""
    if device.stopped is not None:
        return "stopped"
    return device.link_lost.line() if device.link_lost is not None else "link up"


@device_app.command("values")
def device_values(
    name: Annotated[str, typer.Argument(help="The device's name.")],
    site: Annotated[str | None, typer.Option("--site", help="Its site (among namesakes).")] = None,
    agent: Annotated[
        str | None, typer.Option("--agent", help="Its agent (among namesakes).")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show each point of a device with its latest value, when and from which run."""
    with connect(url, token) as client:
        device = client.fleet.values(name, site=site, agent=agent)
    if as_json:
        print_json(device.model_dump(mode="json"))
        return
    rows = [(p.name, p.shown(), p.unit or "", p.at or "", p.run_id or "") for p in device.points]
    print_table(
        f"{device.site}/{device.agent}/{device.name}",
        ["point", "value", "unit", "at", "run"],
        rows,
    )


DeviceArg = Annotated[str, typer.Argument(help="The device's name.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with its task).")]
NamesakeSite = Annotated[str | None, typer.Option("--site", help="Its site (among namesakes).")]
NamesakeAgent = Annotated[str | None, typer.Option("--agent", help="Its agent (among namesakes).")]


def _device_command(action: str, doc: str) -> Callable[..., None]:
    """`tme device stop` or `tme device resume`: one signature, the action differs."""

    def command(
        name: DeviceArg,
        reason: ReasonOption,
        site: NamesakeSite = None,
        agent: NamesakeAgent = None,
        wait: WaitOption = True,
        timeout: TimeoutOption = 90.0,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        _ask_agent(action, name, reason, site, agent, wait, timeout, url, token, as_json)

    command.__doc__ = doc
    return command


device_app.command("stop")(
    _device_command(
        "stop",
        """Stop a device now: cancel its unfinished runs, and have its agent cancel
        whatever waits for it there and write its profile's safe values. The agent then
        refuses its changes until `tme device resume`. Says at once when they were first
        written (and exits 1 then when one could not be); when the stop cut off a write
        that may still land, the agent holds them until it no longer can (the device's
        answer time) and writes them again. With --wait (the default) it ends with the
        stop's run, exit 0 once that succeeded; with --no-wait once they were first
        written. Ctrl-C leaves the stop going on at the agent.""",
    )
)
device_app.command("resume")(
    _device_command(
        "resume",
        """Lift a stop: the device's agent takes its changes again (nothing is written).
        Exit 0 only once the agent answered (with --wait, the default).""",
    )
)


def _ask_agent(
    action: str,
    name: str,
    reason: str,
    site: str | None,
    agent: str | None,
    wait: bool,
    timeout: float,
    url: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    with connect(url, token) as client:
        if wait or action == "stop":  # before the stop goes out: a bad --timeout stops nothing
            check_seconds("timeout", timeout)
        ask = client.fleet.stop if action == "stop" else client.fleet.resume
        answer = ask(name, reason, site=site, agent=agent)
        if not as_json:
            _print_asked(action, name, answer)
        run: RunPublic | None = None
        if action == "stop" and answer.run_id is not None:  # its first writes at once
            stop = Stop(answer.task_id, answer.run_id)
            run = follow_stop(client, name, stop, wait, timeout, quiet=as_json)
        elif wait:
            task = client.tasks.wait(answer.task_id, timeout=timeout)
            run = client.runs.get(task.latest_run_id) if task.latest_run_id else None
    if as_json:
        body = answer.model_dump(mode="json")
        print_json({**body, "run": run.model_dump(mode="json") if run else None})
    elif run is not None and is_final(run.state):
        console.print(f"the agent: {run.state}: {escape(answer_text(run))}", highlight=False)
    if action == "stop" and run is not None and stop_failed(run):
        raise typer.Exit(1)
    if action == "resume" and wait and (run is None or run.state != "succeeded"):
        raise typer.Exit(1)


def _print_asked(action: str, name: str, answer: DeviceStopped) -> None:
    canceled = f"; {len(answer.canceled_runs)} unfinished run(s) of it canceled"
    console.print(
        f"{action} of {name}: task {answer.task_id}, run {answer.run_id}"
        + (canceled if action == "stop" else ""),
        highlight=False,
    )


@site_app.command("list")
def list_sites(
    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """List sites with how many of their agents are online."""
    with connect(url, token) as client:
        sites = client.fleet.sites()
    if as_json:
        print_json([s.model_dump(mode="json") for s in sites])
        return
    rows = [(s.name, f"{s.agents_online}/{s.agents}", s.last_seen) for s in sites]
    print_table("Sites", ["site", "agents online", "last seen"], rows)


@site_app.command("stop")
def stop_site(
    site: Annotated[str, typer.Argument(help="The site's name.")],
    reason: ReasonOption,
    agent: Annotated[str | None, typer.Option("--agent", help="Only this agent's devices.")] = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 90.0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Stop every device of a site that has safe values, at once (of one agent with
    --agent): each as `tme device stop` does. Names each device stopped (and whether its
    agent is offline: its stop then waits for it at most a minute) and those left alone,
    then says each device's first writes as they come. With --wait (the default) it ends
    once every stop's run ended, exit 0 when all succeeded; with --no-wait once every
    device's safe values were first written. Exit 1 when a safe value was not written or
    a stop ended otherwise. Ctrl-C leaves the stops going on at their agents."""
    with connect(url, token) as client:
        check_seconds("timeout", timeout)  # before the stops go out: a bad one stops nothing
        answer = client.fleet.stop_site(site, reason, agent=agent)
        if not as_json:
            _print_site_stop(answer)
        stops = [
            (f"{d.agent}/{d.device}", Stop(d.task_id, d.run_id))
            for d in answer.stopped
            if d.run_id is not None
        ]
        runs = follow_site_stop(client, site, stops, wait, timeout, quiet=as_json)
    if as_json:
        body = answer.model_dump(mode="json")
        print_json({**body, "runs": {k: r.model_dump(mode="json") for k, r in runs.items()}})
    if any(stop_failed(run) for run in runs.values()):
        raise typer.Exit(1)


def _print_site_stop(answer: SiteStopped) -> None:
    left = f", {len(answer.not_stopped)} left alone" if answer.not_stopped else ""
    say = functools.partial(console.print, highlight=False, soft_wrap=True)
    say(f"stop of site {escape(answer.site)}: {len(answer.stopped)} device(s){left}")
    for d in answer.stopped:
        offline = (
            ""
            if d.agent_online
            else f"; its agent {escape(d.agent)} is OFFLINE: the stop waits for it at most 60 s,"
            " then fails as not delivered"
        )
        say(
            f"  {escape(d.agent)}/{escape(d.device)}: task {d.task_id}, run {d.run_id};"
            f" {len(d.canceled_runs)} unfinished run(s) of it canceled{offline}"
        )
    for n in answer.not_stopped:
        say(f"  left alone: {escape(n.agent)}/{escape(n.device)}: {escape(n.why)}")
