"""Idle RSS of a device agent process (target: <= 40 MB).

Starts `tme agent` with no devices against the MQTT broker given (default the local
Mosquitto), waits until it is online, lets it idle, and prints its resident memory.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import Presence, state_topic

IDLE_S = 3.0  # let start-up allocations settle before measuring


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args(argv)
    site, agent = f"bench-{uuid.uuid4().hex[:8]}", "rss"
    online = threading.Event()

    def on_state(message: MqttMessage) -> None:
        if message.payload and Presence.from_json(message.payload).state == "online":
            online.set()

    watcher = MqttLink(args.mqtt, f"tme-bench-{site}")
    watcher.subscribe(state_topic(site, agent), on_state)
    watcher.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.yaml"
        config.write_text(f"site: {site}\nagent: {agent}\nmqtt: {args.mqtt}\nstate_dir: st\n")
        process = subprocess.Popen(
            [sys.executable, "-m", "tme.agents", "-c", str(config)],
            stderr=subprocess.DEVNULL,
        )
        try:
            if not online.wait(30):
                raise SystemExit("agent did not come online")
            time.sleep(IDLE_S)  # the measurement is of an idle agent, by definition
            print(f"agent idle RSS: {rss_mb(process.pid):.1f} MB (target <= 40 MB)")
        finally:
            process.terminate()
            process.wait(30)
            watcher.stop()


if __name__ == "__main__":
    main()
