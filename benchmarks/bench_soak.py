"""Soak: TME through every hop at a steady rate for minutes, window by window.

    .venv/bin/python -m benchmarks.bench_soak [--rate 50] [--minutes 10] [--agents 50]
    .venv/bin/python -m benchmarks.bench_soak --quick       # 2 minutes, 20 s windows

Tasks are created through the REST API at a steady rate (a child process, as the paced
rows of bench_e2e), each a `modbus.write` with `verify: true` on agents driving simulated
plants, over the real RabbitMQ and Mosquitto. For each window (a minute; 20 s with
--quick) it prints the tasks sent, finished and not succeeded, their latency (created
to final state recorded) and the high-water marks sampled every few seconds: commands
not yet published (the outbox), commands waiting in the site's RabbitMQ queue, runs in
flight; and each process's memory (RSS) at the window's end.

The baseline is the run's first window, measured in the same run: memory grows from
the end of it (past start-up and warm-up) to the end of the last, and the last
window's backlog is set against the first's. The targets are those of the reliability
notes for a load held for minutes: p99 <= 1 s in every window, no backlog that keeps
growing, RSS growth < 10 %, no errors. Printed, never asserted.

The controller runs in this process, so its RSS holds the benchmark's own record of the
runs too; that record's size is subtracted (sys.getsizeof of its dicts, keys and values).
The agents share processes (up to 50 each), and each agent's command record (SQLite)
keeps a page cache that grows with its file up to SQLite's default 2 MB, then stays:
the agents' growth is also given per agent, which a short soak shows still rising.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/bench_soak.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

import benchmarks.bench_e2e as e2e
from benchmarks.e2e_load import REST_THREADS
from benchmarks.e2e_peers import percentiles
from benchmarks.e2e_procs import own_mosquitto, start_child, start_plants
from tme.protocol import site_queue
from tme.states import RunState

SAMPLE_S = 5.0
MEMORY_GROUPS = ("controller", "gateway", "agents")
TARGET_P99_MS = 1000.0
TARGET_GROWTH = 0.10


@dataclass
class Sample:
    at: float
    outbox: int  # commands not yet published
    queued: int  # commands in the site's RabbitMQ queue
    in_flight: int  # runs not final
    rss_mb: dict[str, float] = field(default_factory=dict)


class Sampler:
    """Every SAMPLE_S, the backlog at each stage and each process group's RSS."""

    def __init__(self, running: e2e.Stack, every_s: float) -> None:
        self.running = running
        self.every_s = every_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)
        self._processes = {
            group: [psutil.Process(pid) for pid in running.groups[group]] for group in MEMORY_GROUPS
        }

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(e2e.AMQP))
        channel = connection.channel()
        try:
            while True:
                self.samples.append(self.take(channel))
                if self._stop.wait(self.every_s):
                    return
        finally:
            connection.close()

    def take(self, channel: Any) -> Sample:
        from sqlalchemy import func, select

        from tme.controller.store.models import Outbox, Run

        final = [s.value for s in RunState if s.is_final]
        with self.running.engine.connect() as connection:
            outbox = connection.execute(
                select(func.count()).where(Outbox.published_at.is_(None))  # type: ignore[union-attr]
            ).scalar_one()
            in_flight = connection.execute(
                select(func.count()).where(Run.state.not_in(final))  # type: ignore[attr-defined]
            ).scalar_one()
        queue = channel.queue_declare(site_queue(self.running.site), passive=True)
        rss = {group: _rss_mb(processes) for group, processes in self._processes.items()}
        rss["controller"] -= self.running.finals.size_bytes() / 2**20
        return Sample(time.time(), outbox, queue.method.message_count, in_flight, rss)


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@dataclass
class Window:
    start: float
    sent: int = 0
    done: int = 0
    not_ok: int = 0
    errors: int = 0
    p50: float | None = None
    p99: float | None = None
    outbox: int = 0
    queued: int = 0
    in_flight: int = 0
    rss_mb: dict[str, float] = field(default_factory=dict)


def soak(
    running: e2e.Stack, rate: float, seconds: float, window_s: float, stack: ExitStack
) -> tuple[list[Window], list[tuple[float, str]], int]:
    """Send `rate` tasks/s for `seconds`; the windows, the failed creates, the runs
    that never reached a final state."""
    count = int(rate * seconds)
    load = start_child(
        stack, "rest-load",
        "--url", running.url, "--token", running.token, "--site", running.site,
        "--agents", str(running.agents), "--count", str(count), "--threads", str(REST_THREADS),
        "--first", "3000000", "--rate", str(rate),
    )  # fmt: skip
    with Sampler(running, min(SAMPLE_S, window_s / 4)) as sampler:
        load.send("go")
        line = load.read_line(timeout=seconds + 600)
    # read once sampling stopped: the load's record is the benchmark's, not the controller's
    result = json.loads(line)
    created = {run: sent for run, sent in result["created"]}
    running.finals.wait_for(list(created), 120)
    load.stop()
    lost = sum(1 for run in created if run not in running.finals.at)
    return (
        windows(running.finals, created, result, sampler.samples, window_s),
        result["errors"],
        lost,
    )


def windows(
    finals: e2e.Finals,
    created: dict[str, float],
    result: dict[str, Any],
    samples: list[Sample],
    window_s: float,
) -> list[Window]:
    start = float(result["started"])
    count = max(1, math.ceil((float(result["ended"]) - start) / window_s))
    out = [Window(start + i * window_s) for i in range(count)]

    def of(at: float) -> Window | None:
        i = int((at - start) // window_s)
        return out[i] if 0 <= i < count else None

    latencies: dict[int, list[float]] = {}
    for run, sent in created.items():
        window = of(sent)
        if window is None:
            continue
        window.sent += 1
        if run in finals.at:
            window.done += 1
            window.not_ok += finals.outcome[run] != "succeeded"
            latencies.setdefault(id(window), []).append((finals.at[run] - sent) * 1000)
    for sent, _error in result["errors"]:
        window = of(sent)
        if window is not None:
            window.errors += 1
    for window in out:
        window.p50, window.p99 = percentiles(sorted(latencies.get(id(window), [])))
    for sample in samples:
        window = of(sample.at)
        if window is None:
            continue
        window.outbox = max(window.outbox, sample.outbox)
        window.queued = max(window.queued, sample.queued)
        window.in_flight = max(window.in_flight, sample.in_flight)
        window.rss_mb = sample.rss_mb  # the last sample of the window
    return out


def print_windows(out: list[Window], window_s: float) -> None:
    def ms(value: float | None) -> str:
        return f"{value:8.1f}" if value is not None else f"{'-':>8}"

    memory = "  ".join(f"{g:>10}" for g in MEMORY_GROUPS)
    print(
        f"\n{'from s':>6} {'sent':>6} {'done':>6} {'not ok':>6} {'errors':>6} {'p50 ms':>8}"
        f" {'p99 ms':>8} {'outbox':>7} {'queue':>6} {'flight':>6}  RSS MB: {memory}"
    )
    print("-" * 120)
    for i, w in enumerate(out):
        rss = "  ".join(
            f"{w.rss_mb[g]:10.1f}" if g in w.rss_mb else f"{'-':>10}" for g in MEMORY_GROUPS
        )
        print(
            f"{i * window_s:6.0f} {w.sent:6} {w.done:6} {w.not_ok:6} {w.errors:6} {ms(w.p50)}"
            f" {ms(w.p99)} {w.outbox:7} {w.queued:6} {w.in_flight:6}  {'':8}{rss}"
        )


def summarise(out: list[Window], errors: int, lost: int, rate: float, agents: int) -> None:
    print("\ntargets (a load held for minutes; the first window is the baseline):")
    worst = max(out, key=lambda w: w.p99 or 0.0)
    p99_ok = all(w.p99 is not None and w.p99 <= TARGET_P99_MS for w in out)
    said = f"{worst.p99:.1f} ms" if worst.p99 is not None else "none finished"
    print(_mark(p99_ok, f"p99 <= {TARGET_P99_MS:.0f} ms in every window: worst {said}"))
    sampled = [w for w in out if w.rss_mb]  # a last window of a few sends may hold no sample
    if not sampled:
        print("  (no samples: backlog and memory not compared)")
    else:
        _backlog_and_memory(sampled[0], sampled[-1], rate, agents)
    not_ok = sum(w.not_ok for w in out)
    clean = errors == 0 and lost == 0 and not_ok == 0
    print(
        _mark(
            clean,
            f"no errors: {errors} creates failed, {lost} runs never final, {not_ok} not succeeded",
        )
    )


def _backlog_and_memory(first: Window, last: Window, rate: float, agents: int) -> None:
    # Bounded: no more than twice the first window's, or than a second's tasks (a few
    # runs in flight come and go with each sample).
    bounded = last.in_flight <= max(2 * first.in_flight, rate)
    print(
        _mark(
            bounded,
            f"backlog bounded: runs in flight at most {last.in_flight} in the last window,"
            f" {first.in_flight} in the first",
        )
    )
    for group in MEMORY_GROUPS:
        before, after = first.rss_mb.get(group, 0.0), last.rss_mb.get(group, 0.0)
        growth = (after - before) / before if before else 0.0
        each = f"; {(after - before) / agents:+.2f} MB an agent" if group == "agents" else ""
        print(
            _mark(
                growth < TARGET_GROWTH,
                f"{group} RSS growth < {TARGET_GROWTH:.0%}: {before:.1f} -> {after:.1f} MB"
                f" ({growth:+.1%}{each})",
            )
        )


def _mark(ok: bool, text: str) -> str:
    return f"  {'MET ' if ok else 'MISS'} {text}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="tasks per second")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--database", default="", help="controller DB URL (default: SQLite)")
    parser.add_argument("--quick", action="store_true", help="2 minutes in 20 s windows")
    args = parser.parse_args(argv)
    minutes = 2.0 if args.quick else args.minutes
    window_s = 20.0 if args.quick else 60.0
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tme-soak-mq-") as mq:
        e2e.MQTT = own_mosquitto(stack, Path(mq))
        plants = start_plants(stack)
        with e2e.tme_stack(args.agents, plants, args.database) as running:
            out, errors, lost = soak(running, args.rate, minutes * 60, window_s, running.stack)
    print(
        f"\n== soak: {args.rate:.0f} tasks/s through REST for {minutes:.0f} min,"
        f" {args.agents} agents, windows of {window_s:.0f} s =="
    )
    print_windows(out, window_s)
    if errors:
        print(f"\n{len(errors)} creates failed, the first: {errors[0][1]}")
    summarise(out, len(errors), lost, args.rate, args.agents)


if __name__ == "__main__":
    main()
