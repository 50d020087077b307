"""The processes of the end-to-end benchmark besides the controller.

    python -m benchmarks.e2e_roles gateway --site S --bus URL --mqtt URL --state-dir D
    python -m benchmarks.e2e_roles agents --site S --mqtt URL --state-dir D --first 0 --count 50
        --plant-port P [--plant-port P2 ...]
    python -m benchmarks.e2e_roles plant
    python -m benchmarks.e2e_roles rest-load --url URL --site S --agents N --count C --threads T
        [--first F] [--rate R]

Each prints `ready` once started (rest-load prints one JSON line of its results) and
stops cleanly when its stdin closes, so the benchmark never leaves a process behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

PROFILES = Path(__file__).resolve().parents[1] / "configs" / "profiles"
WORKERS_PER_AGENT = 4
SETPOINT = 1200  # rpm, inside the pump profile's envelope


def task_fields(site: str, agents: int, i: int) -> dict[str, Any]:
    """Task i of a run: write the pump's speed setpoint on agent i mod N and read it back.

    Every writer writes the same value: many agents (and the Celery peer's two
    processes) share one register, and a read-back must not see another's write.
    """
    return {
        "name": f"bench {i}",
        "op": "modbus.write",
        "target": {"site": site, "agent": agent_name(i % agents), "device": "pump1"},
        "params": {"point": "speed_setpoint", "value": SETPOINT, "verify": True},
        "timeout_s": 30,
    }


def agent_name(i: int) -> str:
    return f"a{i:03d}"


def _serve_until_stdin_closes(stack: ExitStack) -> None:
    with stack:
        print("ready", flush=True)
        sys.stdin.read()  # the benchmark closes our stdin to stop us
        _write_profile()


PROFILE_DIR = os.environ.get("TME_BENCH_PROFILE", "")  # profile each role process into it


def _start_profile() -> None:
    if PROFILE_DIR:
        import yappi

        yappi.set_clock_type("cpu")
        yappi.start()


def _write_profile() -> None:
    """CPU profile of this process (all threads), most costly functions first."""
    if not PROFILE_DIR:
        return
    import yappi

    yappi.stop()
    path = Path(PROFILE_DIR) / f"{sys.argv[1]}-{os.getpid()}.txt"
    columns = {0: ("name", 110), 1: ("ncall", 9), 2: ("tsub", 9), 3: ("ttot", 9)}
    with path.open("w") as out:
        for key in ("ttot", "tsub"):
            stats = yappi.get_func_stats()
            stats.sort(key).print_all(out=out, columns=columns)


def events_queue(site: str) -> str:
    """The benchmark controller's own events queue (bound to its site only): other
    controllers on a shared broker must not take this run's events, nor this one theirs;
    its gateway declares this one, not the default queue no one here reads."""
    return f"tme.bench.events.{site}"


def run_gateway(args: argparse.Namespace) -> None:
    from tme.agents.gateway import Gateway, GatewayConfig

    gateway = Gateway(
        GatewayConfig(
            site=args.site,
            bus_url=args.bus,
            mqtt_url=args.mqtt,
            state_dir=Path(args.state_dir),
            events_queue=events_queue(args.site),
            events_binding=f"{args.site}.#",
        )
    )
    stack = ExitStack()
    gateway.start()
    stack.callback(gateway.stop)
    _serve_until_stdin_closes(stack)


def run_agents(args: argparse.Namespace) -> None:
    from tme.agents.agent import DeviceAgent
    from tme.agents.agent_config import parse_agent_config
    from tme.agents.runner import AgentThread

    stack = ExitStack()
    for i in range(args.first, args.first + args.count):
        port = args.plant_port[i % len(args.plant_port)]
        device = {
            "driver": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": port, "timeout_s": 5},
            "unit": 1,
            "profile": str(PROFILES / "pump.yaml"),
        }
        data = {
            "site": args.site,
            "agent": agent_name(i),
            "mqtt": args.mqtt,
            "state_dir": str(Path(args.state_dir) / agent_name(i)),
            "worker_count": WORKERS_PER_AGENT,
            "devices": {"pump1": device},
        }
        runner = AgentThread(DeviceAgent(parse_agent_config(data, source="bench"))).start()
        stack.callback(runner.stop)
    _serve_until_stdin_closes(stack)


def run_plant(args: argparse.Namespace) -> None:
    """A frozen plant (no physics ticks): registers change only when written."""
    from tme.simulators.modbus_plant import PlantSimulator

    stack = ExitStack()
    plant = stack.enter_context(PlantSimulator.run_in_thread(tick_s=None))
    print(f"port {plant.port}", flush=True)
    _serve_until_stdin_closes(stack)


def run_rest_load(args: argparse.Namespace) -> None:
    """Create tasks through the REST API from several threads; print when each was sent.

    With --rate, task i is sent at i/rate s after the start (open loop: a slow answer
    does not hold back the next send while a thread is free), else as fast as it goes.
    """
    import tme

    created: list[tuple[str, float]] = []
    errors: list[tuple[float, str]] = []  # a create the API refused or did not answer
    lock = threading.Lock()
    counter = iter(range(args.count))
    started = 0.0

    def worker(client: tme.Client) -> None:
        mine: list[tuple[str, float]] = []
        for i in _locked(counter, lock):
            if args.rate:
                pause = started + i / args.rate - time.time()
                if pause > 0:
                    time.sleep(pause)  # pacing the load is the point here
            sent = time.time()
            try:
                task = client.tasks.create(**task_fields(args.site, args.agents, args.first + i))
            except Exception as exc:  # counted and shown: the load goes on
                with lock:
                    errors.append((sent, f"{type(exc).__name__}: {exc}"[:200]))
                continue
            mine.append((str(task.latest_run_id), sent))
        with lock:
            created.extend(mine)

    # The clients are built and connected before the clock starts: building eight
    # (httpx's SSL contexts, ~20 ms of CPU each) while the first tasks are sent took
    # the cores from the system under measurement.
    clients = [tme.Client(args.url, args.token, timeout=60) for _ in range(args.threads)]
    for client in clients:
        client.health()
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    started = time.time()
    threads = [threading.Thread(target=worker, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    ended = time.time()
    result = {"started": started, "ended": ended, "created": created, "errors": errors}
    print(json.dumps(result), flush=True)


def _locked(counter: Any, lock: threading.Lock) -> Any:
    while True:
        with lock:
            i = next(counter, None)
        if i is None:
            return
        yield i


ROLES: dict[str, Callable[[argparse.Namespace], None]] = {
    "gateway": run_gateway,
    "agents": run_agents,
    "plant": run_plant,
    "rest-load": run_rest_load,
}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e_roles")
    parser.add_argument("role", choices=sorted(ROLES))
    parser.add_argument("--site", default="")
    parser.add_argument("--bus", default="")
    parser.add_argument("--mqtt", default="")
    parser.add_argument("--state-dir", default="")
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--plant-port", type=int, action="append", default=[])
    parser.add_argument("--url", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--agents", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rate", type=float, default=0.0, help="rest-load: tasks/s (0: no pacing)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s: %(message)s")
    _start_profile()
    ROLES[args.role](args)


if __name__ == "__main__":
    main()
