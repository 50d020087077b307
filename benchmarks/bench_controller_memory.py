"""The controller's memory over many tasks: does it hold on to them?

    .venv/bin/python -m benchmarks.bench_controller_memory [--rounds 10] [--tasks 2000]

The controller runs in this process with a gateway and 10 agents on simulated plants,
over the real RabbitMQ and a Mosquitto of its own (bench_e2e's stack). Each round
creates `--tasks` tasks in-process (the service path) and waits for every one to
finish; after each, the benchmark's own record of the runs is cleared and garbage is
collected, then it prints the process's RSS, SQLite's own memory (its page caches and
statements, all connections: sqlite3_memory_used, when Python's sqlite3 uses the
system's library) and the number of Python objects. At the end: the object types that
grew by more than 200, and the RSS growth per 10,000 tasks in the first half of the
rounds against the second (the baseline, measured in the same run): memory that a
cache fills levels off, memory a leak holds does not. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import ctypes.util
import gc
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as `python benchmarks/bench_controller_memory.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

import benchmarks.bench_e2e as e2e
from benchmarks.e2e_load import create_by_service
from benchmarks.e2e_procs import own_mosquitto, start_plants

AGENTS = 10
GREW_BY = 200  # object types growing by more than this are listed


def sqlite_memory_mb() -> float | None:
    """SQLite's memory in use in this process, or None when it cannot be read here."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return None
    try:
        used = ctypes.CDLL(name).sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    used.restype = ctypes.c_int64
    return float(used()) / 2**20


def object_counts() -> collections.Counter[str]:
    return collections.Counter(type(o).__name__ for o in gc.get_objects())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per round")
    args = parser.parse_args(argv)
    me = psutil.Process()
    rss: list[float] = []
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="tme-mem-mq-") as mq:
        e2e.MQTT = own_mosquitto(stack, Path(mq))
        plants = start_plants(stack)
        with e2e.tme_stack(AGENTS, plants, "") as running:
            gc.collect()
            before = object_counts()
            print(f"\n== controller memory, {args.rounds} rounds of {args.tasks} tasks ==\n")
            print(f"{'tasks':>8} {'per s':>6} {'RSS MB':>8} {'SQLite MB':>10} {'objects':>9}")
            done = 0
            for _ in range(args.rounds):
                created = create_by_service(running.app, running.site, AGENTS, done, args.tasks)
                row = running.finals.measure("round", created, 300)
                done += args.tasks
                running.finals.at.clear()  # the benchmark's record, not the controller's
                running.finals.outcome.clear()
                gc.collect()
                rss.append(me.memory_info().rss / 2**20)
                sqlite = sqlite_memory_mb()
                print(
                    f"{done:8} {row.rate or 0:6.0f} {rss[-1]:8.1f}"
                    f" {sqlite if sqlite is not None else float('nan'):10.1f}"
                    f" {len(gc.get_objects()):9}",
                    flush=True,
                )
            grown = object_counts() - before
    listed = [(name, n) for name, n in grown.most_common() if n > GREW_BY]
    print(f"\nobject types grown by more than {GREW_BY}: {listed or 'none'}")
    half = len(rss) // 2
    if half >= 2:
        per = 10_000 / args.tasks
        first = (rss[half - 1] - rss[0]) / (half - 1) * per
        second = (rss[-1] - rss[half - 1]) / (len(rss) - half) * per
        print(
            f"RSS growth per 10,000 tasks: first half {first:.1f} MB (baseline),"
            f" second half {second:.1f} MB"
        )


if __name__ == "__main__":
    main()
