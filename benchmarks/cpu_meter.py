"""CPU time spent per task by each process on the path, over one measured stretch.

The end-to-end figures say how fast; this says who pays: the controller (this
process), the gateway, the agents, the simulated plants, and the brokers (RabbitMQ's
Erlang VM and Mosquitto). With 2 cores, the sum bounds the rate: at 1,500 tasks/s
every task may cost the whole machine at most 2,000 / 1,500 = 1.3 ms of CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import psutil

CORES = os.cpu_count() or 1


def broker_pids() -> dict[str, list[int]]:
    """RabbitMQ's VM and the Mosquitto processes running on this machine."""
    found: dict[str, list[int]] = {"rabbitmq": [], "mosquitto": []}
    for process in psutil.process_iter(["name"]):
        name = process.info["name"] or ""
        if name.startswith("beam"):
            found["rabbitmq"].append(process.pid)
        elif name == "mosquitto":
            found["mosquitto"].append(process.pid)
    return found


class CpuMeter:
    """CPU seconds (user + system) of named groups of processes between start and stop."""

    def __init__(self, groups: Mapping[str, Iterable[int]]) -> None:
        self.groups = {name: [_process(pid) for pid in pids] for name, pids in groups.items()}
        self._start: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def start(self) -> None:
        self._start = self._now()

    def stop(self) -> dict[str, float]:
        end = self._now()
        self.used = {name: end[name] - self._start.get(name, 0.0) for name in end}
        return self.used

    def _now(self) -> dict[str, float]:
        return {name: sum(_cpu(p) for p in procs) for name, procs in self.groups.items()}

    def report(self, tasks: int, seconds: float) -> str:
        """One line: ms of CPU per task for each group, the total, and how busy the cores were."""
        if not self.used or tasks <= 0:
            return ""
        parts = [f"{name} {used * 1000 / tasks:.2f}" for name, used in self.used.items()]
        total = sum(self.used.values())
        busy = total / seconds / CORES * 100 if seconds > 0 else 0.0
        return (
            f"CPU ms per task: {', '.join(parts)}; total {total * 1000 / tasks:.2f}"
            f" ({busy:.0f}% of {CORES} cores)"
        )


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _cpu(process: psutil.Process | None) -> float:
    if process is None:
        return 0.0
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)
