"""Idle RSS of a device agent process (target: <= 40 MB with a Modbus device).

For each case (no device, one Modbus TCP device, one Modbus RTU device, one serial
line device) it starts `python -m tme.agents` against the MQTT broker given
(default the local Mosquitto) and the simulated machines, waits until the agent is
online, lets it idle, and prints its resident memory and how many modules it has
loaded; then it runs one command (a read from the device, or a noop) and measures
the agent idle again. Each case runs `--runs` times; the table shows the median and
the range.

The module count comes from the agent process itself: it runs under a small probe
(benchmarks/agent_probe.py) that writes `len(sys.modules)` to a file on SIGUSR1,
sent after RSS has been read, so the probe's answer costs the measurement nothing.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import (
    FINAL_EVENT_TYPES,
    Command,
    Event,
    Presence,
    cmd_topic,
    evt_topic,
    state_topic,
    utcnow,
)

TARGET_MB = 40.0  # the delivery issue's target (issue 3, Benchmark)
IDLE_S = 3.0  # let start-up allocations settle before measuring
TIMEOUT_S = 30.0  # to come online, run one command, report a module count
PROFILES = Path(__file__).resolve().parents[1] / "configs" / "profiles"
PROBE = Path(__file__).with_name("agent_probe.py")


@dataclass
class Sample:
    idle_mb: float
    idle_modules: int
    after_mb: float  # idle again after one command has run
    after_modules: int


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def device_yaml(case: str, plant_port: int, rtu_url: str, serial_url: str) -> str:
    """The `devices:` section of the agent config for one case."""
    if case == "no device":
        return ""
    if case == "modbus tcp":
        connection = f"{{host: 127.0.0.1, port: {plant_port}}}"
        driver, profile = "modbus_tcp", "pump"
    elif case == "modbus rtu":
        driver, connection, profile = "modbus_rtu", f"{{port: '{rtu_url}'}}", "pump"
    else:
        driver, connection, profile = "serial", f"{{port: '{serial_url}'}}", "instrument"
    return (
        "devices:\n"
        f"  dev1: {{driver: {driver}, connection: {connection}, unit: 1,"
        f" profile: {PROFILES / (profile + '.yaml')}}}\n"
    )


def one_command(case: str, site: str, agent: str) -> Command:
    """The command each case runs once: a read from its device (noop without one)."""
    if case == "no device":
        op, device, params = "noop", None, {}
    elif case == "serial":
        op, device, params = "serial.command", "dev1", {"command": "identify"}
    else:
        op, device, params = "modbus.read", "dev1", {"point": "speed_setpoint"}
    return Command(
        task_id=1,
        site=site,
        agent=agent,
        device=device,
        op=op,
        params=params,
        timeout_s=10,
        not_after=utcnow() + timedelta(minutes=1),
    )


def wait_for(ready: threading.Event | Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not (ready.is_set() if isinstance(ready, threading.Event) else ready()):
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: {what} within {TIMEOUT_S:.0f} s")
        time.sleep(0.05)


def module_count(pid: int, modules_file: Path) -> int:
    modules_file.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    wait_for(lambda: modules_file.exists() and modules_file.read_text().endswith("\n"), "no count")
    return int(modules_file.read_text())


def measure_once(case: str, mqtt: str, devices: str, tmp: Path) -> Sample:
    site, agent = f"bench-{uuid.uuid4().hex[:8]}", "rss"
    online, finished = threading.Event(), threading.Event()
    outcome: list[str] = []

    def on_state(message: MqttMessage) -> None:
        if message.payload and Presence.from_json(message.payload).state == "online":
            online.set()

    def on_event(message: MqttMessage) -> None:
        event = Event.from_json(message.payload)
        if event.type in FINAL_EVENT_TYPES:
            outcome.append(f"{event.type} {event.reason}".strip())
            finished.set()

    config = tmp / f"{site}.yaml"
    config.write_text(f"site: {site}\nagent: {agent}\nmqtt: {mqtt}\nstate_dir: {site}\n{devices}")
    modules_file = tmp / f"{site}.modules"
    watcher = MqttLink(mqtt, f"tme-bench-{site}")
    watcher.subscribe(state_topic(site, agent), on_state)
    watcher.subscribe(evt_topic(site, agent), on_event)
    watcher.start()
    process = subprocess.Popen(
        [sys.executable, str(PROBE), str(modules_file), "-c", str(config)],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(online, "the agent did not come online")
        time.sleep(IDLE_S)  # the measurement is of an idle agent, by definition
        idle = rss_mb(process.pid), module_count(process.pid, modules_file)
        watcher.publish(cmd_topic(site, agent), one_command(case, site, agent).to_json())
        wait_for(finished, "the command did not finish")
        if not outcome[0].startswith("succeeded"):
            raise SystemExit(f"benchmark: {case}: the command ended {outcome[0]}")
        time.sleep(IDLE_S)  # idle again
        after = rss_mb(process.pid), module_count(process.pid, modules_file)
        return Sample(idle[0], idle[1], after[0], after[1])
    finally:
        process.terminate()
        process.wait(30)
        watcher.stop()


def row(case: str, values: list[float], modules: int) -> str:
    median = statistics.median(values)
    verdict = "ok" if median <= TARGET_MB else "OVER"
    return (
        f"{case:<26} {median:>7.1f} {min(values):>6.1f}-{max(values):<6.1f} {modules:>8}"
        f"  {verdict} ({median - TARGET_MB:+.1f} MB)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    from tme.simulators.instrument import SerialInstrument
    from tme.simulators.modbus_plant import PlantSimulator

    cases = ["no device", "modbus tcp", "modbus rtu", "serial"]
    print(f"device agent RSS, idle {IDLE_S:.0f} s; {args.runs} runs each: median, min-max")
    print(f"{'case':<26} {'RSS MB':>7} {'range':>13} {'modules':>8}  target <= {TARGET_MB:.0f} MB")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        plant = stack.enter_context(
            PlantSimulator.run_in_thread(rtu="socket://127.0.0.1:0", tick_s=None)
        )
        instrument = stack.enter_context(SerialInstrument.run_in_thread())
        for case in cases:
            devices = device_yaml(case, plant.port, plant.rtu_url, instrument.url)
            samples = [measure_once(case, args.mqtt, devices, Path(tmp)) for _ in range(args.runs)]
            last = samples[-1]
            print(row(case, [s.idle_mb for s in samples], last.idle_modules))
            print(
                row("  after one command", [s.after_mb for s in samples], last.after_modules),
                flush=True,
            )


if __name__ == "__main__":
    main()
