"""`tme agent` and `tme gateway`: the two edge processes.

Each runs until SIGINT/SIGTERM, then stops cleanly (explicit offline presence).
Heavy imports happen inside the commands, so `tme --help` stays fast.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from pathlib import Path

import typer

agent_app = typer.Typer(no_args_is_help=False)
gateway_app = typer.Typer(no_args_is_help=False)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT)
    if not verbose:
        # pika logs every connection step at INFO (a gateway waiting for its queue opens
        # one per check); the other processes quiet it the same way (logging.loggers).
        logging.getLogger("pika").setLevel(logging.WARNING)


@agent_app.callback(invoke_without_command=True)
def agent(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="Agent config file (YAML)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a device agent (`tme agent --config FILE`), or list agents (`tme agent list`)."""
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("give --config FILE to run an agent", param_hint="--config")
    from tme.agents.agent import DeviceAgent
    from tme.agents.agent_config import load_agent_config, track_errors

    _setup_logging(verbose)
    agent_config = load_agent_config(config)
    track_errors(agent_config)
    agent_ = DeviceAgent(agent_config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await agent_.run_until(stop)

    asyncio.run(main())


@gateway_app.callback(invoke_without_command=True)
def gateway(
    site: str = typer.Option(..., "--site", help="The site whose queue this gateway serves."),
    broker: str | None = typer.Option(
        None, "--broker", help="Message bus URL (default: the broker settings)."
    ),
    mqtt: str | None = typer.Option(
        None, "--mqtt", help="MQTT broker URL (default: the mqtt settings)."
    ),
    state_dir: Path = typer.Option(Path("state/gateway"), "--state-dir"),
    name: str = typer.Option("gateway", "--name", help="This gateway's name within the site."),
    declare_topology: bool | None = typer.Option(
        None,
        "--declare-topology/--no-declare-topology",
        help="Declare the RabbitMQ topology at start, or leave it to the controller "
        "(default: the gateway.declare_topology setting).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a site gateway: bus queue -> MQTT commands, MQTT events -> bus."""
    from tme.agents.gateway import Gateway, GatewayConfig
    from tme.config import load_settings
    from tme.error_tracking import install_error_tracking

    _setup_logging(verbose)
    settings = load_settings()
    install_error_tracking(settings, process="gateway")
    gw = Gateway(
        GatewayConfig(
            site=site,
            name=name,
            bus_url=broker or settings.broker.effective_url,
            mqtt_url=mqtt or settings.mqtt.effective_url,
            state_dir=state_dir,
            events_queue=settings.broker.events_queue,
            events_binding=settings.broker.events_binding,
            bus_options=settings.broker.bus_options(),
            heartbeat_s=settings.gateway.heartbeat_s,
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
