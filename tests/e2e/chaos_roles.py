"""The gateway and the controller as child processes of the fault-injection tests
(they SIGKILL them).

    python tests/e2e/chaos_roles.py gateway SITE BUS_URL MQTT_URL STATE_DIR
    python tests/e2e/chaos_roles.py controller SITE BUS_URL DATABASE_URL PORT

Each prints `ready` once started and stops cleanly when its stdin closes or on SIGTERM.
Their RabbitMQ connections are named `<site>-gw` and `<site>-ctl`, so a test can close
them. The controller serves a database the test upgraded (and made its admin in).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def run_gateway(site: str, bus_url: str, mqtt_url: str, state_dir: str) -> None:
    from tme.agents.gateway import Gateway, GatewayConfig
    from tme.bus import open_bus

    bus = open_bus(
        bus_url,
        connection_name=f"{site}-gw",
        confirm_timeout_s=10,
        reconnect_min_s=0.1,
        reconnect_max_s=1.0,
    )
    gateway = Gateway(
        GatewayConfig(
            site=site,
            bus_url=bus_url,
            mqtt_url=mqtt_url,
            state_dir=Path(state_dir),
            events_queue=f"tme.controller.events.{site}",
            events_binding=f"{site}.#",
        ),
        bus=bus,
    )
    stop = _stop_on_stdin_close_or_sigterm()
    gateway.start()
    try:
        print("ready", flush=True)
        stop.wait()
    finally:
        gateway.stop()


def controller_settings(site: str, bus_url: str, database_url: str) -> Any:
    """The controller's settings: its own events queue, taking only the site's events."""
    from tme.config import Settings

    return Settings.model_validate(
        {
            "database": {"url": database_url},
            "broker": {
                "url": bus_url,
                "events_queue": f"tme.controller.events.{site}",
                "events_binding": f"{site}.#",
            },
        }
    )


def open_controller_bus(bus_url: str, connection_name: str) -> Any:
    """The controller's bus, its connections named for the test, reconnecting fast."""
    from tme.bus import open_bus

    return open_bus(
        bus_url,
        connection_name=connection_name,
        confirm_timeout_s=10,
        reconnect_min_s=0.1,
        reconnect_max_s=1.0,
    )


def run_controller(site: str, bus_url: str, database_url: str, port: str) -> None:
    """The controller app (API, dispatcher, event consumer) served on 127.0.0.1:PORT."""
    import uvicorn

    from tme.controller.app import create_app

    bus = open_controller_bus(bus_url, f"{site}-ctl")
    bus.start()
    app = create_app(controller_settings(site, bus_url, database_url), bus=bus)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=int(port), log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="controller-http", daemon=True)
    stop = _stop_on_stdin_close_or_sigterm()
    thread.start()
    try:
        while not server.started and thread.is_alive():
            stop.wait(0.02)  # start-up poll (uvicorn has no started event)
        if server.started:
            print("ready", flush=True)
            stop.wait()
    finally:
        server.should_exit = True
        thread.join(30)
        bus.stop()


def _stop_on_stdin_close_or_sigterm() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    return stop


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    role, *args = sys.argv[1:]
    roles = {"gateway": run_gateway, "controller": run_controller}
    if role not in roles:
        raise SystemExit(f"unknown role {role!r}")
    roles[role](*args)


if __name__ == "__main__":
    main()
