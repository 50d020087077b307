"""How soon a stop makes the machines safe: from the request to the moment each device's
safe values were written (the `at` of its run's `result.first_pass`, the agent's clock,
on this machine), a device's stop beside a site's stop of two devices on two agents, in
the same run; and how soon a cancel stops a running operation (to the `at` of its run's
`canceled` hop, the agent's clock).

    .venv/bin/python -m benchmarks.bench_stop [--rounds 10]

Everything runs over the real RabbitMQ and Mosquitto (TME_TEST_AMQP_URL,
TME_TEST_MQTT_URL): the whole local stack (controller, gateway, three agents, the
simulated plant), as `tme demo --broker --mqtt` runs it. The pump and the conveyor are
stopped, each round, then resumed. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import tme
from tme.schemas import RunDetail
from tme.stack import LocalStack, StackConfig
from tme.states import FINAL_STATES

PROFILES = Path(__file__).resolve().parents[1] / "configs" / "profiles"
AMQP = os.environ.get("TME_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MQTT = os.environ.get("TME_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
FINAL = {state.value for state in FINAL_STATES}
DEADLINE_S = 30.0


def _run_once(client: tme.Client, run_id: str, done: Callable[[str], bool]) -> RunDetail:
    """The run, once its state is `done` (within DEADLINE_S)."""
    deadline = time.monotonic() + DEADLINE_S
    while not done((run := client.runs.get(run_id)).state):
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run.state}")
        time.sleep(0.01)  # polling interval of a deadline wait
    return run


def _written_ms(client: tme.Client, run_id: str, sent: float) -> float:
    """Milliseconds from `sent` to the stop's first writes, once its run ended."""
    run = _run_once(client, run_id, lambda state: state in FINAL)
    first = (run.result or {}).get("first_pass")
    if run.state != "succeeded" or not isinstance(first, dict):
        raise RuntimeError(f"stop {run_id} {run.state}: {run.reason}")
    return (datetime.fromisoformat(first["at"]).timestamp() - sent) * 1000


def _canceled_ms(client: tme.Client, run_id: str, sent: float) -> float:
    """Milliseconds from `sent` to the agent's stop of the run, once it was canceled."""
    run = _run_once(client, run_id, lambda state: state in FINAL)
    hops = [e for e in run.events if e.to_state == "canceled"]
    if run.state != "canceled" or not hops:
        raise RuntimeError(f"cancel of {run_id}: {run.state} ({run.reason})")
    return (hops[0].at.timestamp() - sent) * 1000


def _rounds(count: int, one: Callable[[], dict[str, float]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for _ in range(count):
        for name, ms in one().items():
            found.setdefault(name, []).append(ms)
    return found


def _print(label: str, found: dict[str, list[float]]) -> None:
    for name, values in found.items():
        values.sort()
        print(
            f"{label:<34} {name:<10} {statistics.median(values):8.1f} {values[-1]:8.1f}"
            f" {len(values):>4}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tme-bench-stop-") as tmp:
        config = StackConfig(
            database_url=f"sqlite:///{tmp}/tme.db",
            state_dir=Path(tmp) / "state",
            profiles_dir=PROFILES,
            site=f"bench-{uuid.uuid4().hex[:8]}",
            bus_url=AMQP,
            mqtt_url=MQTT,
        )
        with LocalStack(config) as stack, tme.Client(stack.url, stack.token) as client:
            site = config.site
            deadline = time.monotonic() + DEADLINE_S
            while {"pump1", "conveyor1"} - {d.name for d in client.fleet.devices(site=site)}:
                if time.monotonic() > deadline:
                    raise TimeoutError("the devices were not published")
                time.sleep(0.1)  # polling interval of a deadline wait

            def resume() -> None:
                for device in ("pump1", "conveyor1"):
                    done = client.fleet.resume(device, "bench", site=site)
                    client.tasks.wait(done.task_id, timeout=DEADLINE_S)

            def one_device() -> dict[str, float]:
                sent = time.time()
                stopped = client.fleet.stop("pump1", "bench", site=site)
                took = {"pump1": _written_ms(client, stopped.run_id or "", sent)}
                resume()
                return took

            def whole_site() -> dict[str, float]:
                sent = time.time()
                stopped = client.fleet.stop_site(site, "bench")
                took = {
                    d.device: _written_ms(client, d.run_id or "", sent) for d in stopped.stopped
                }
                resume()
                return took

            def cancel() -> dict[str, float]:
                task = client.tasks.create(
                    name="bench sleep",
                    op="sleep",
                    target={"site": site, "agent": "skid-a"},
                    params={"seconds": 60},
                    timeout_s=120,
                )
                run_id = str(task.latest_run_id)
                _run_once(client, run_id, lambda state: state == "running")
                sent = time.time()
                client.runs.cancel(run_id)
                return {"sleep": _canceled_ms(client, run_id, sent)}

            one_device()  # the first command of each agent opens its connections
            whole_site()
            cancel()
            print(f"\n== stop -> safe values written, {args.rounds} rounds ==\n")
            print(f"{'request':<34} {'device':<10} {'p50 ms':>8} {'max ms':>8} {'n':>4}")
            print("-" * 68)
            _print("POST /devices/pump1/stop", _rounds(args.rounds, one_device))
            _print("POST /sites/<site>/stop (2 agents)", _rounds(args.rounds, whole_site))
            print(f"\n== cancel -> the agent stopped the run, {args.rounds} rounds ==\n")
            _print("POST /runs/<id>/cancel", _rounds(args.rounds, cancel))


if __name__ == "__main__":
    main()
