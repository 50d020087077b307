"""The gateway as a child process of the fault-injection tests (they SIGKILL it).

    python tests/e2e/chaos_roles.py gateway SITE BUS_URL MQTT_URL STATE_DIR

Prints `ready` once started and stops cleanly when its stdin closes or on SIGTERM.
Its RabbitMQ connections are named `<site>-gw`, so a test can close them.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path


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
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    gateway.start()
    try:
        print("ready", flush=True)
        stop.wait()
    finally:
        gateway.stop()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    role, *args = sys.argv[1:]
    if role != "gateway":
        raise SystemExit(f"unknown role {role!r}")
    run_gateway(*args)


if __name__ == "__main__":
    main()
