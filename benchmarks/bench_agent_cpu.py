"""CPU time a device agent spends per command (process time, not wall time).

One `python -m tme.agents` process with one Modbus TCP pump drives the simulated plant
(in this process, so its CPU is not counted) through `--commands` commands fed over
MQTT, `--window` of them unanswered at a time, as a gateway would offer a burst. A
gateway's presence announcing event batches is published for the site, so the agent
packs its events as it does behind a real gateway. After a warm-up (its connection to
the plant open, its modules loaded) the agent's own CPU time (user + system, all its
threads) is read before the first command and after the last final event.

Each run starts a fresh agent (its own site and state directory). With
`--compare REV` the runs alternate between the agent code of git revision REV and
this tree's (`--compare OLD NEW`: of two revisions, this tree left alone), so both
see the same machine in the same minutes: on a machine shared with others, only
figures taken side by side compare.

    python -m benchmarks.bench_agent_cpu --compare main --runs 6

With `--profile DIR` each agent runs under yappi (CPU clock, every thread) and writes
its profile, most costly functions first, to DIR (the figures are then yappi's, not
the agent's own).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path

import psutil

from tme.mqtt import MqttLink, MqttMessage
from tme.protocol import (
    EVENT_BATCHES,
    FINAL_EVENT_TYPES,
    Command,
    Event,
    EventBatch,
    Presence,
    cmd_topic,
    evt_topic,
    state_topic,
    utcnow,
)

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "configs" / "profiles" / "pump.yaml"
GATEWAY = "gateway"  # the agent's default gateway name
WARM_UP = 50  # commands before the measurement: connection open, code paths loaded
TIMEOUT_S = 120.0
SETPOINT = 1200  # rpm, inside the pump profile's envelope
# `python -c` for an agent under yappi: argv[1] is the profile's path, the rest the agent's
PROFILED_AGENT = """
import sys, yappi
out = sys.argv.pop(1)
sys.argv[0] = "python -m tme.agents"
yappi.set_clock_type("cpu")
yappi.start()
from tme.agents.__main__ import main
try:
    main()
finally:
    yappi.stop()
    columns = {0: ("name", 110), 1: ("ncall", 9), 2: ("tsub", 9), 3: ("ttot", 9)}
    with open(out, "w") as f:
        for key in ("ttot", "tsub"):
            yappi.get_func_stats().sort(key).print_all(out=f, columns=columns)
"""


def command(site: str, agent: str, op: str, i: int) -> Command:
    """Command i: the end-to-end benchmark's write with its read-back, or a read."""
    if op == "write":
        params = {"point": "speed_setpoint", "value": SETPOINT, "verify": True}
        name = "modbus.write"
    else:
        params, name = {"point": "speed_setpoint"}, "modbus.read"
    return Command(
        task_id=i,
        site=site,
        agent=agent,
        device="pump1",
        op=name,
        params=params,
        timeout_s=30,
        not_after=utcnow() + timedelta(minutes=5),
    )


class Feed:
    """Publishes commands to one agent and counts their final events."""

    def __init__(self, mqtt: str, site: str, agent: str) -> None:
        self.site, self.agent = site, agent
        self.online = threading.Event()
        self.finals: dict[str, str] = {}  # command id -> final event type
        self._changed = threading.Condition()
        self.link = MqttLink(mqtt, f"tme-bench-cpu-{site}")
        self.link.subscribe(state_topic(site, agent), self._on_state)
        self.link.subscribe(evt_topic(site, agent), self._on_events)

    def start(self) -> None:
        self.link.start()
        if not self.link.wait_connected(30):
            raise SystemExit("benchmark: no MQTT connection")
        gateway = Presence(
            site=self.site, agent=GATEWAY, role="gateway", state="online", features=[EVENT_BATCHES]
        )
        self.link.publish(state_topic(self.site, GATEWAY), gateway.to_json(), retain=True)

    def stop(self) -> None:
        self.link.publish(state_topic(self.site, GATEWAY), b"", retain=True)  # clear it
        self.link.publish(state_topic(self.site, self.agent), b"", retain=True)
        self.link.stop()

    def _on_state(self, message: MqttMessage) -> None:
        if message.payload and Presence.from_json(message.payload).state == "online":
            self.online.set()

    def _on_events(self, message: MqttMessage) -> None:
        if b'"kind":"events"' in message.payload:
            events = EventBatch.from_json(message.payload).events
        else:
            events = [Event.from_json(message.payload)]
        with self._changed:
            for event in events:
                if event.type in FINAL_EVENT_TYPES:
                    self.finals[event.command_id] = event.type
            self._changed.notify_all()

    def run(self, op: str, count: int, window: int, first: int) -> None:
        """Send `count` commands, at most `window` unanswered, and wait for every answer."""
        ids: list[str] = []
        deadline = time.monotonic() + TIMEOUT_S
        for i in range(count):
            with self._changed:
                while sum(1 for c in ids[-window:] if c not in self.finals) >= window:
                    if not self._changed.wait(max(deadline - time.monotonic(), 0)):
                        raise SystemExit("benchmark: the agent stopped answering")
            sent = command(self.site, self.agent, op, first + i)
            ids.append(sent.id)
            self.link.publish(cmd_topic(self.site, self.agent), sent.to_json())
        with self._changed:
            while any(c not in self.finals for c in ids):
                if not self._changed.wait(max(deadline - time.monotonic(), 0)):
                    raise SystemExit("benchmark: the agent stopped answering")
        failed = [self.finals[c] for c in ids if self.finals[c] != "succeeded"]
        if failed:
            raise SystemExit(f"benchmark: {len(failed)} commands ended {failed[0]}")


def cpu_s(process: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds of the process so far."""
    times = process.cpu_times()
    return float(times.user), float(times.system)


def measure(
    mqtt: str, plant_port: int, tmp: Path, source: Path | None, args: argparse.Namespace
) -> tuple[float, float]:
    """(user, system) CPU ms per command of one fresh agent (`source`: import its code
    from there)."""
    site, agent = f"bench-cpu-{uuid.uuid4().hex[:8]}", "cpu"
    config = tmp / f"{site}.yaml"
    config.write_text(
        f"site: {site}\nagent: {agent}\nmqtt: {mqtt}\nstate_dir: {tmp / site}\n"
        "devices:\n  pump1:\n    driver: modbus_tcp\n"
        f"    connection: {{host: 127.0.0.1, port: {plant_port}, timeout_s: 5}}\n"
        f"    unit: 1\n    profile: {PROFILE}\n"
    )
    env = dict(os.environ)
    if source is not None:
        env["PYTHONPATH"] = str(source)
    feed = Feed(mqtt, site, agent)
    feed.start()
    run_agent = ["-m", "tme.agents"]
    if args.profile:
        run_agent = ["-c", PROFILED_AGENT, str(Path(args.profile).resolve() / f"agent-{site}.txt")]
    process = subprocess.Popen(
        [sys.executable, *run_agent, "-c", str(config)],
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=tmp,
    )
    try:
        if not feed.online.wait(TIMEOUT_S):
            raise SystemExit("benchmark: the agent did not come online")
        feed.run(args.op, WARM_UP, args.window, 0)
        watched = psutil.Process(process.pid)
        user, system = cpu_s(watched)
        feed.run(args.op, args.commands, args.window, WARM_UP)
        user_after, system_after = cpu_s(watched)
        per = 1000 / args.commands
        return (user_after - user) * per, (system_after - system) * per
    finally:
        process.terminate()
        process.wait(30)
        feed.stop()


def agent_source(rev: str, into: Path) -> Path:
    """The `tme` package (core, agents, drivers) of git revision `rev`, laid out as it
    imports (pyproject's package-dir), for the agent process's PYTHONPATH."""
    archive = into / "archive"
    archive.mkdir()
    tar = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(archive)], input=tar, check=True)
    mapping = tomllib.loads((archive / "pyproject.toml").read_text())["tool"]["setuptools"]
    root = into / "path"
    for package, folder in sorted(mapping["package-dir"].items()):
        if package in ("tme", "tme.agents", "tme.drivers"):  # what an agent imports
            shutil.copytree(archive / folder, root / package.replace(".", "/"), dirs_exist_ok=True)
    return root


def _archived(rev: str, into: Path) -> Path:
    into.mkdir()
    return agent_source(rev, into)


def summary(label: str, values: list[float]) -> str:
    return (
        f"{label:<22} {statistics.median(values):7.3f} {min(values):7.3f} {max(values):7.3f}"
        f"  ({', '.join(f'{v:.3f}' for v in values)})"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--commands", type=int, default=1000, help="measured per run")
    parser.add_argument("--window", type=int, default=20, help="unanswered at a time")
    parser.add_argument("--runs", type=int, default=3, help="per code version")
    parser.add_argument("--op", choices=("write", "read"), default="write")
    parser.add_argument(
        "--compare",
        metavar="REV",
        nargs="+",
        default=[],
        help="alternate with this git revision (two: between those two revisions)",
    )
    parser.add_argument("--profile", metavar="DIR", help="write each agent's yappi profile here")
    args = parser.parse_args(argv)
    from tme.simulators.modbus_plant import PlantSimulator

    print(
        f"device agent CPU ms per command ({args.op}, {args.commands} per run,"
        f" window {args.window}); median, min, max (each run)"
    )
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        plant = stack.enter_context(PlantSimulator.run_in_thread(tick_s=None))
        versions: list[tuple[str, Path | None]] = [("this tree", None)]
        if len(args.compare) > 2:
            raise SystemExit("benchmark: --compare takes one or two revisions")
        if args.compare:
            versions = [
                (rev, _archived(rev, tmp / f"rev{i}")) for i, rev in enumerate(args.compare)
            ]
            if len(versions) == 1:
                versions.append(("this tree", None))
        results: dict[str, list[float]] = {label: [] for label, _ in versions}
        for run in range(args.runs):
            for label, source in versions if run % 2 == 0 else versions[::-1]:
                user, system = measure(args.mqtt, plant.port, tmp, source, args)
                results[label].append(user + system)
                print(
                    f"  run {run + 1} {label:<14} {user + system:7.3f} ms"
                    f" (user {user:.3f}, system {system:.3f})",
                    flush=True,
                )
        print(f"{'code':<22} {'median':>7} {'min':>7} {'max':>7}")
        for label, values in results.items():
            print(summary(label, values))
        if len(versions) == 2:
            (old_label, _), (new_label, _) = versions
            old, new = statistics.median(results[old_label]), statistics.median(results[new_label])
            change = (new - old) / old * 100
            print(f"{new_label}: {change:+.1f}% CPU per command against {old_label}")


if __name__ == "__main__":
    main()
