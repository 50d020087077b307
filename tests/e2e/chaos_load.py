"""The load and the checks of the fault-injection tests: a site's whole path built from
chaos_parts, a stream of write tasks through the REST API, and what must hold after.

Each test sends LOAD tasks, each writing its own value to the pump's speed setpoint
(with read-back), breaks one part while they flow, mends it, and then checks, reading
the simulated machine directly (never through TME), that every run reached a final
state, that each succeeded run went to `succeeded` exactly once, and that no value (no
command id) was written to the machine more than once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos_parts import Child, Mosquitto, agent_child, gateway_child
from sqlalchemy import bindparam, text
from waiting import wait_until

import tme
from tme.errors import TransportError, Unavailable

LOAD = 200  # write tasks per test
RATE = 25.0  # tasks created per second: the load lasts ~8 s, faults land in its middle
FIRST_VALUE = 1000  # task i writes FIRST_VALUE + i rpm (inside the pump's 0..3000 envelope)
PUMP_UNIT, SPEED_SETPOINT = 1, 0  # configs/profiles/pump.yaml
AGENT = "a1"
SETTLE_TIMEOUT_S = 40.0
FINAL = {"succeeded", "failed", "timed_out", "canceled", "skipped", "rejected", "expired", "lost"}
# Between tries of a create the controller could not take (down, or its database down).
CREATE_RETRY_PAUSE_S = 0.2


@dataclass
class Site:
    """One site's whole path, each part breakable on its own. `engine` reads the
    controller's database directly (never through a relay a test cuts)."""

    name: str
    controller: Any  # chaos_parts.Controller or ControllerProcess: url, token, engine
    mosquitto: Mosquitto
    gateway: Child
    agent: Child
    plant: Any
    journal: Path
    engine: Any
    task_ids: list[int] = field(default_factory=list)
    unavailable: Counter[str] = field(default_factory=Counter)  # creates refused, by why

    # --- reading the state, never through TME for the machine ---------------------

    def writes(self) -> Counter[int]:
        """How often each value reached the pump's setpoint register."""
        counts: Counter[int] = Counter()
        for values in self.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT):
            counts[values[0]] += 1
        return counts

    def count_runs(self, *states: str) -> int:
        query = text("SELECT count(*) FROM runs WHERE state IN :states").bindparams(
            bindparam("states", expanding=True)
        )
        with self.engine.connect() as db:
            return int(db.execute(query, {"states": list(states)}).scalar() or 0)

    def runs(self) -> dict[int, tuple[str, str, str, int]]:
        """Per value written: (run id, state, reason, transitions to `succeeded`)."""
        with self.engine.connect() as db:
            rows = db.execute(
                text(
                    "SELECT t.params, r.id, r.state, r.reason,"
                    " (SELECT count(*) FROM run_events e"
                    "  WHERE e.run_id = r.id AND e.to_state = 'succeeded')"
                    " FROM runs r JOIN tasks t ON t.id = r.task_id"
                )
            ).all()
        return {
            int((json.loads(p) if isinstance(p, str) else p)["value"]): (rid, st, reason, n)
            for p, rid, st, reason, n in rows
        }

    def journal_sent(self) -> int:
        """Commands the gateway sent that no agent answered yet (read from its journal)."""
        with sqlite3.connect(f"file:{self.journal}?mode=ro", uri=True, timeout=5) as db:
            return int(
                db.execute("SELECT count(*) FROM journal WHERE state = 'sent'").fetchone()[0]
            )

    def stall_agent_until_commands_wait(self, at_least: int = 10) -> None:
        """Freeze the agent until `at_least` commands sent by the gateway wait unanswered,
        so that the next fault finds them in flight (and the agent answered them later)."""
        self.agent.pause()
        wait_until(
            lambda: self.journal_sent() >= at_least,
            timeout=20,
            what=f"{at_least} commands sent to the stalled agent",
        )

    def wait_for_more(self, state: str, more: int = 10) -> None:
        """Wait until `more` runs more than now are in `state` (the load goes on)."""
        now = self.count_runs(state)
        wait_until(
            lambda: self.count_runs(state) >= now + more,
            timeout=20,
            what=f"{more} more runs {state}",
        )

    # --- the load ------------------------------------------------------------------

    def start_load(self, ride_out_outages: bool = False) -> threading.Thread:
        """Create LOAD write tasks at RATE per second, in a thread of its own.

        With `ride_out_outages`, a create the controller refuses with 503 (its database
        is down) or cannot take (it is down) is tried again with the same idempotency
        key, as a client would, until it is taken; each refusal is counted in
        `unavailable`. Without, the first such error ends the load (and fails the test).
        """
        pace = threading.Event()  # never set: its wait is the pacing of an open-loop load

        def create(client: tme.Client, i: int) -> int:
            while True:
                try:
                    task = client.tasks.create(
                        name=f"chaos {i}",
                        op="modbus.write",
                        target={"site": self.name, "agent": AGENT, "device": "pump1"},
                        params={
                            "point": "speed_setpoint",
                            "value": FIRST_VALUE + i,
                            "verify": True,
                        },
                        timeout_s=20,
                        idempotency_key=f"{self.name}-{i}",
                    )
                    return int(task.id)
                except (Unavailable, TransportError) as exc:
                    if not ride_out_outages:
                        raise
                    self.unavailable[type(exc).__name__] += 1
                    pace.wait(CREATE_RETRY_PAUSE_S)

        def create_all() -> None:
            with tme.Client(self.controller.url, self.controller.token, timeout=30) as client:
                for i in range(LOAD):
                    self.task_ids.append(create(client, i))
                    pace.wait(1.0 / RATE)

        thread = threading.Thread(target=create_all, name="chaos-load", daemon=True)
        thread.start()
        return thread

    def wait_for_writes(self, at_least: int) -> None:
        wait_until(
            lambda: sum(self.writes().values()) >= at_least,
            timeout=30,
            what=f"{at_least} writes at the plant",
        )

    def settle(self, load: threading.Thread) -> dict[int, tuple[str, str, str, int]]:
        """Wait until every task was created and every run is final; the runs by value."""
        load.join(60)
        assert not load.is_alive(), "creating the tasks took over a minute"
        assert len(self.task_ids) == LOAD
        wait_until(
            lambda: self.count_runs(*FINAL) == LOAD,
            timeout=SETTLE_TIMEOUT_S,
            what=f"all {LOAD} runs final (not final: {self._not_final()})",
        )
        return self.runs()

    def _not_final(self) -> Counter[str]:
        return Counter(state for _, state, _, _ in self.runs().values() if state not in FINAL)


def assert_each_succeeded_once(
    site: Site,
    runs: dict[int, tuple[str, str, str, int]],
    except_values: frozenset[int] = frozenset(),
) -> None:
    """Every run succeeded, went to `succeeded` exactly once, and its value reached the
    machine exactly once; no value of no task was ever written."""
    writes = site.writes()
    assert set(runs) == {FIRST_VALUE + i for i in range(LOAD)}
    twice = {value: n for value, n in writes.items() if n > 1}
    assert not twice, f"written more than once (command run twice): {twice}"
    assert set(writes) <= set(runs), f"values no task wrote: {set(writes) - set(runs)}"
    for value, (run_id, state, reason, succeeded) in runs.items():
        if value in except_values:
            continue
        assert (state, succeeded) == ("succeeded", 1), (value, run_id, state, reason, succeeded)
        assert writes[value] == 1, (value, run_id, "never reached the machine")


@contextmanager
def running_site(
    tmp_path: Path, bus_url: str, name: str, controller: Any, engine: Any = None
) -> Iterator[Site]:
    """The whole path of site `name`, started, around `controller` (not started yet: a
    chaos_parts.Controller or ControllerProcess); stopped and its queues deleted after.
    `engine` reads the database (default: the controller's own engine)."""
    from tme.simulators.modbus_plant import PlantSimulator

    with ExitStack() as parts:
        parts.callback(delete_queues, bus_url, name)
        plant = parts.enter_context(PlantSimulator.run_in_thread(tick_s=None))
        parts.callback(controller.stop)
        controller.start()
        mosquitto = Mosquitto(tmp_path / "mosquitto")
        parts.callback(mosquitto.close)
        mosquitto.start()
        gateway = gateway_child(
            name, bus_url, mosquitto.url, tmp_path / "gateway", tmp_path / "gateway.log"
        )
        parts.callback(gateway.close)
        gateway.start()
        agent = agent_child(
            name, AGENT, mosquitto.url, plant.port, tmp_path / "agent", tmp_path / "agent.log"
        )
        parts.callback(agent.close)
        agent.start()
        journal = tmp_path / "gateway" / "journal.sqlite3"
        yield Site(
            name,
            controller,
            mosquitto,
            gateway,
            agent,
            plant,
            journal,
            engine if engine is not None else controller.engine,
        )


def delete_queues(bus_url: str, site: str) -> None:
    """The site's queue and its controller's events queue, off the shared broker."""
    from tme.bus import open_bus
    from tme.protocol import site_queue

    bus = open_bus(bus_url)
    bus.start()
    try:
        bus.delete_queue(site_queue(site))
        bus.delete_queue(f"tme.controller.events.{site}")
    finally:
        bus.stop()
