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


@agent_app.callback(invoke_without_command=True)
def agent(
    config: Path = typer.Option(..., "--config", "-c", help="Agent config file (YAML)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a device agent: take commands over MQTT and run them on its devices."""
    from tme.agents.agent import DeviceAgent
    from tme.agents.agent_config import load_agent_config

    _setup_logging(verbose)
    agent_ = DeviceAgent(load_agent_config(config))

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
    broker: str = typer.Option(
        "amqp://guest:guest@127.0.0.1:5672/%2F", "--broker", help="Message bus URL."
    ),
    mqtt: str = typer.Option("mqtt://127.0.0.1:1883", "--mqtt", help="MQTT broker URL."),
    state_dir: Path = typer.Option(Path("state/gateway"), "--state-dir"),
    name: str = typer.Option("gateway", "--name", help="This gateway's name within the site."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a site gateway: bus queue -> MQTT commands, MQTT events -> bus."""
    from tme.agents.gateway import Gateway, GatewayConfig

    _setup_logging(verbose)
    gw = Gateway(
        GatewayConfig(site=site, name=name, bus_url=broker, mqtt_url=mqtt, state_dir=state_dir)
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
