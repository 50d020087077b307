"""`tme agent` and `tme gateway`: the two edge processes.

Each runs until SIGINT/SIGTERM, then stops cleanly (explicit offline presence).
Heavy imports happen inside the commands, so `tme --help` stays fast.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from tme.cli.common import JsonOption

if TYPE_CHECKING:
    from tme.agents.lockout import Lockouts

agent_app = typer.Typer(no_args_is_help=False)
gateway_app = typer.Typer(no_args_is_help=False)


@agent_app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="Agent config file (YAML)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG."),
) -> None:
    """Run a device agent (`tme agent --config FILE`), list agents (`tme agent list`), lock
    a device out at its agent (`tme agent lock`, `unlock`, `lockouts`)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("give --config FILE to run an agent", param_hint="--config")
    from tme.agents.agent import DeviceAgent
    from tme.agents.agent_config import load_agent_config, track_errors
    from tme.agents.agent_logging import setup_agent_logging

    setup_agent_logging(verbose)
    agent_config = load_agent_config(config, os.environ)
    track_errors(agent_config)
    agent_ = DeviceAgent(agent_config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent_.run_until(stop)

    asyncio.run(main())


ConfigOption = typer.Option(..., "--config", "-c", help="The agent's config file (YAML).")


def _lockouts_of(config: Path, device: str | None = None, unlocking: bool = False) -> Lockouts:
    """The lockouts of the agent `config` describes; `device` must be one of its devices
    (or, to unlock, one its state directory still holds a lockout of: a device renamed
    or removed from the config keeps its lockout until it is ended)."""
    from tme.agents.agent_config import load_agent_config
    from tme.agents.lockout import Lockouts

    agent_config = load_agent_config(config)
    lockouts = Lockouts(agent_config.state_dir)
    if unlocking and device is not None and device in lockouts.all():
        return lockouts
    if device is not None and device not in agent_config.devices:
        from tme.cli.common import usage_error

        known = ", ".join(sorted(agent_config.devices)) or "none"
        usage_error(f"agent {agent_config.agent!r} has no device {device!r}; its devices: {known}")
    return lockouts


@agent_app.command("lock")
def lock(
    device: str = typer.Argument(..., help="The device to lock out."),
    reason: str = typer.Option(..., "--reason", help="Why: shown with every refused command."),
    by: str | None = typer.Option(None, "--by", help="Who holds the lock (default: you)."),
    config: Path = ConfigOption,
) -> None:
    """Lock a device out at its agent (run where the agent runs): its writes and
    changing serial commands are refused until `tme agent unlock`; reads still run.
    The running agent tells the controller within a second."""
    import getpass

    from tme.cli.common import cli_errors, usage_error

    if not reason.strip():
        usage_error("give --reason TEXT: it is shown with every command the lockout refuses")
    with cli_errors():
        lockout = _lockouts_of(config, device).lock(device, by or getpass.getuser(), reason)
    typer.echo(f"{device} locked out by {lockout.by} since {lockout.at}: {lockout.reason}")


@agent_app.command("unlock")
def unlock(
    device: str = typer.Argument(..., help="The device to hand back."),
    config: Path = ConfigOption,
) -> None:
    """End a device's lockout at its agent: commands that change it run again."""
    from tme.cli.common import cli_errors

    with cli_errors():
        ended = _lockouts_of(config, device, unlocking=True).unlock(device)
    if ended is None:
        typer.echo(f"{device} was not locked out")
        return
    typer.echo(f"{device} unlocked (locked out by {ended.by} since {ended.at}: {ended.reason})")


@agent_app.command("lockouts")
def lockouts(
    config: Path = ConfigOption,
    as_json: JsonOption = False,
) -> None:
    """List the devices locked out at this agent, then those stopped (from the
    controller, or by the agent itself on link loss), if any.

    With --json, {"lockouts": [...], "stopped": [...]}, each entry with its device, by,
    at and reason."""
    from tme.agents.lockout import STOPPED_DIR, Lockouts
    from tme.cli.common import cli_errors
    from tme.cli.output import print_json, print_table

    with cli_errors():
        found = _lockouts_of(config)
        stopped = Lockouts(found.dir.parent, STOPPED_DIR).all()
        locked = found.all()
    if as_json:
        print_json(
            {
                "lockouts": [{"device": lo.device, **lo.public()} for lo in locked.values()],
                "stopped": [{"device": s.device, **s.public()} for s in stopped.values()],
            }
        )
        return
    rows = [(lo.device, lo.by, lo.at, lo.reason) for lo in locked.values()]
    print_table("Lockouts", ["device", "by", "since", "reason"], rows)
    if stopped:  # lifted by a resume from the controller (tme device resume)
        print_table(
            "Stopped (changes refused until tme device resume)",
            ["device", "by", "since", "reason"],
            [(s.device, s.by, s.at, s.reason) for s in stopped.values()],
        )


@gateway_app.callback(invoke_without_command=True)
def gateway(
    site: str = typer.Option(..., "--site", help="The site whose queue this gateway serves."),
    broker: str | None = typer.Option(
        None, "--broker", help="Message bus URL (default: the broker settings)."
    ),
    mqtt: str | None = typer.Option(
        None, "--mqtt", help="MQTT broker URL (default: the mqtt settings)."
    ),
    state_dir: Path = typer.Option(
        Path("state/gateway"),
        "--state-dir",
        help="Folder of the gateway's journal (one per gateway: a second needs its own).",
    ),
    name: str = typer.Option("gateway", "--name", help="This gateway's name within the site."),
    declare_topology: bool | None = typer.Option(
        None,
        "--declare-topology/--no-declare-topology",
        help="Declare the RabbitMQ topology at start, or leave it to the controller "
        "(default: the gateway.declare_topology setting).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG."),
) -> None:
    """Run a site gateway: bus queue -> MQTT commands, MQTT events -> bus."""
    from tme.agents.gateway import Gateway, GatewayConfig
    from tme.cli.common import usage_error
    from tme.config import load_settings
    from tme.error_tracking import install_error_tracking
    from tme.logs import configure_logging
    from tme.mqtt import TlsFiles
    from tme.topics import name_problem

    for option, value in (("--site", site), ("--name", name)):
        if (problem := name_problem(value)) is not None:
            usage_error(f"{option} {value!r}: {problem}")

    settings = load_settings()
    # logging.format (json for log shippers), level, file and loggers, as the controller
    # does (the gateway logged plain INFO lines whatever they said); -v: DEBUG
    logging_settings = settings.logging
    if verbose:
        logging_settings = logging_settings.model_copy(update={"level": "DEBUG"})
    configure_logging(logging_settings)
    install_error_tracking(settings, process="gateway")
    gw = Gateway(
        GatewayConfig(
            site=site,
            name=name,
            bus_url=broker or settings.broker.effective_url,
            mqtt_url=mqtt or settings.mqtt.effective_url,
            mqtt_username=settings.mqtt.username or None,
            mqtt_password=settings.mqtt.password.get_secret_value() or None,
            mqtt_protocol=settings.mqtt.protocol,
            mqtt_keepalive_s=settings.mqtt.keepalive_s,
            mqtt_session_expiry_s=settings.mqtt.session_expiry_s,
            mqtt_tls=TlsFiles(
                settings.mqtt.ca_file or None,
                settings.mqtt.cert_file or None,
                settings.mqtt.key_file or None,
            ),
            state_dir=state_dir,
            events_queue=settings.broker.events_queue,
            events_binding=settings.broker.events_binding,
            bus_options=settings.broker.bus_options(),
            heartbeat_s=settings.gateway.heartbeat_s,
            journal_keep_s=settings.gateway.journal_keep_s,
            declare_topology=(
                settings.gateway.declare_topology if declare_topology is None else declare_topology
            ),
        )
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    gw.start()
    try:
        while not stop.wait(1.0):  # wakes for signals; the gateway works on its own threads
            pass
    finally:
        gw.stop()
