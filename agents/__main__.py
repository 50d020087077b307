"""`python -m tme.agents --config agent.yaml`: the agent without the full CLI (smaller RSS)."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import load_agent_config, track_errors
from tme.agents.agent_logging import setup_agent_logging
from tme.errors import TMEError


async def _main(config_path: str) -> None:
    config = load_agent_config(config_path, os.environ)
    track_errors(config)
    agent = DeviceAgent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.run_until(stop)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tme.agents")
    parser.add_argument("--config", "-c", required=True)
    args = parser.parse_args()
    setup_agent_logging()
    try:
        asyncio.run(_main(args.config))
    except TMEError as exc:  # a mistake in the config or its files: one line, as `tme agent`
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
