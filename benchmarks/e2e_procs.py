"""Child processes of the end-to-end benchmark: started, read from, and always stopped."""

from __future__ import annotations

import selectors
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack, suppress
from pathlib import Path

from benchmarks.bench_agent_rss import IDLE_S, rss_mb

REPO = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 120.0


class Child:
    """A `benchmarks.e2e_roles` process; it stops when its stdin closes."""

    def __init__(self, role: str, *args: str) -> None:
        self.role = role
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.e2e_roles", role, *args],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.first = self.read_line(READY_TIMEOUT_S)

    def read_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                raise TimeoutError(f"{self.role}: no answer within {timeout} s")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.role} exited with {self.process.wait()}")
        return line.strip()

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def stop(self) -> None:
        if self.process.poll() is None and self.process.stdin is not None:
            with suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_child(stack: ExitStack, role: str, *args: str) -> Child:
    child = Child(role, *args)
    stack.callback(child.stop)
    return child


PLANTS = 2  # simulated plant processes the benchmarks' agents share


def start_plants(stack: ExitStack) -> dict[int, int]:
    """PLANTS simulated plants, each a child process: {its Modbus port: its process id}."""
    plants = {}
    for _ in range(PLANTS):
        plant = start_child(stack, "plant")
        plants[int(plant.first.split()[1])] = plant.process.pid
    return plants


def agent_idle_rss(mqtt: str, plant_port: int) -> float:
    """RSS of `python -m tme.agents` with one Modbus device, idle after coming online."""
    from tme.mqtt import MqttLink, MqttMessage
    from tme.protocol import Presence, state_topic

    site, agent = f"bench-{uuid.uuid4().hex[:8]}", "rss"
    online = threading.Event()

    def on_state(message: MqttMessage) -> None:
        if message.payload and Presence.from_json(message.payload).state == "online":
            online.set()

    watcher = MqttLink(mqtt, f"tme-bench-{site}")
    watcher.subscribe(state_topic(site, agent), on_state)
    watcher.start()
    profile = REPO / "configs" / "profiles" / "pump.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.yaml"
        config.write_text(
            f"site: {site}\nagent: {agent}\nmqtt: {mqtt}\nstate_dir: {tmp}/st\n"
            "devices:\n  pump1:\n    driver: modbus_tcp\n"
            f"    connection: {{host: 127.0.0.1, port: {plant_port}}}\n"
            f"    unit: 1\n    profile: {profile}\n"
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "tme.agents", "-c", str(config)], stderr=subprocess.DEVNULL
        )
        try:
            if not online.wait(30):
                raise RuntimeError("the agent did not come online")
            time.sleep(IDLE_S)  # the measurement is of an idle agent, by definition
            return rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
            watcher.stop()


def own_mosquitto(stack: ExitStack, tmp: Path) -> str:
    """A Mosquitto of the run's own, configured as configs/mosquitto advises for a site:
    a raised per-client queue (the default drops QoS 1 messages past 1,000 queued) and
    more messages in flight, so the gateway's confirm-then-ack intake is not capped at 20,
    and TCP_NODELAY, so a small packet is not held for the peer's delayed ACK (~40 ms)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = tmp / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 100000\nmax_queued_bytes 0\nmax_inflight_messages 1000\n"
        "set_tcp_nodelay true\n"
    )
    process = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    stack.callback(process.wait, 30)
    stack.callback(process.terminate)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as client:
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return f"mqtt://127.0.0.1:{port}"
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.05)  # start-up poll: mosquitto offers nothing to wait on
