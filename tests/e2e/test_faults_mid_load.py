"""Faults in the middle of a stream of write tasks, on the whole path with real brokers.

The promise under test (docs: DESIGN.md, "The path of a task"): every hop is
at-least-once; execution on a machine is at-most-once per command id; restarts of
RabbitMQ, the MQTT broker or the gateway lose no command.

Each test sends LOAD tasks through the REST API, each writing its own value to the
pump's speed setpoint (with read-back), breaks one part while they flow, mends it, and
then checks, reading the simulated machine directly (never through TME), that every
run reached a final state, that each succeeded run went to `succeeded` exactly once,
and that no value (no command id) was written to the machine more than once.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from chaos_parts import (
    Child,
    Controller,
    Mosquitto,
    agent_child,
    connection_pids,
    gateway_child,
    rabbitmqctl,
    require_rabbitmqctl,
)
from sqlalchemy import bindparam, text
from waiting import wait_until

import tme

pytestmark = pytest.mark.external_service

LOAD = 200  # write tasks per test
RATE = 25.0  # tasks created per second: the load lasts ~8 s, faults land in its middle
FIRST_VALUE = 1000  # task i writes FIRST_VALUE + i rpm (inside the pump's 0..3000 envelope)
PUMP_UNIT, SPEED_SETPOINT = 1, 0  # configs/profiles/pump.yaml
AGENT = "a1"
SETTLE_TIMEOUT_S = 40.0
FINAL = {"succeeded", "failed", "timed_out", "canceled", "skipped", "rejected", "expired", "lost"}


@dataclass
class Site:
    """One site's whole path, each part breakable on its own."""

    name: str
    controller: Controller
    mosquitto: Mosquitto
    gateway: Child
    agent: Child
    plant: object
    journal: Path
    task_ids: list[int] = field(default_factory=list)

    # --- reading the state, never through TME for the machine ---------------------

    def writes(self) -> Counter[int]:
        """How often each value reached the pump's setpoint register."""
        counts: Counter[int] = Counter()
        for values in self.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT):  # type: ignore[attr-defined]
            counts[values[0]] += 1
        return counts

    def count_runs(self, *states: str) -> int:
        query = text("SELECT count(*) FROM runs WHERE state IN :states").bindparams(
            bindparam("states", expanding=True)
        )
        with self.controller.engine.connect() as db:
            return int(db.execute(query, {"states": list(states)}).scalar() or 0)

    def runs(self) -> dict[int, tuple[str, str, str, int]]:
        """Per value written: (run id, state, reason, transitions to `succeeded`)."""
        with self.controller.engine.connect() as db:
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

    def start_load(self) -> threading.Thread:
        """Create LOAD write tasks at RATE per second, in a thread of its own."""
        pace = threading.Event()  # never set: its wait is the pacing of an open-loop load

        def create_all() -> None:
            with tme.Client(self.controller.url, self.controller.token, timeout=30) as client:
                for i in range(LOAD):
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
                    )
                    self.task_ids.append(task.id)
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


@pytest.fixture
def site(tmp_path: Path, rabbitmq_url: str) -> Iterator[Site]:
    from tme.simulators.modbus_plant import PlantSimulator

    name = f"chaos-{uuid.uuid4().hex[:8]}"
    with ExitStack() as parts:
        parts.callback(delete_queues, rabbitmq_url, name)
        plant = parts.enter_context(PlantSimulator.run_in_thread(tick_s=None))
        controller = Controller(name, rabbitmq_url, f"sqlite:///{tmp_path}/tme.db", f"{name}-ctl")
        parts.callback(controller.stop)
        controller.start()
        mosquitto = Mosquitto(tmp_path / "mosquitto")
        parts.callback(mosquitto.close)
        mosquitto.start()
        gateway = gateway_child(
            name, rabbitmq_url, mosquitto.url, tmp_path / "gateway", tmp_path / "gateway.log"
        )
        parts.callback(gateway.close)
        gateway.start()
        agent = agent_child(
            name, AGENT, mosquitto.url, plant.port, tmp_path / "agent", tmp_path / "agent.log"
        )
        parts.callback(agent.close)
        agent.start()
        journal = tmp_path / "gateway" / "journal.sqlite3"
        yield Site(name, controller, mosquitto, gateway, agent, plant, journal)


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


def test_rabbitmq_drops_the_controller_and_gateway_connections_mid_load(site: Site) -> None:
    """RabbitMQ closes every connection of the controller and of the gateway while
    tasks flow: once while the gateway is stalled with deliveries unacked, once in
    full flow. Guarantee: every run succeeds exactly once and each command writes to
    the machine once (no command or event lost, none applied or run twice)."""
    require_rabbitmqctl()
    load = site.start_load()
    site.wait_for_writes(40)
    site.gateway.pause()
    site.wait_for_more("dispatched")  # commands wait on RabbitMQ and in the gateway's socket
    closed = close_connections(site)
    site.gateway.resume()
    wait_reconnected(site, closed)
    site.wait_for_writes(110)
    wait_reconnected(site, close_connections(site))
    assert_each_succeeded_once(site, site.settle(load))


def close_connections(site: Site) -> set[str]:
    """Close every RabbitMQ connection of the site's controller and gateway (broker-side
    pids, all of them found first); the pids closed."""
    closed = connection_pids(f"{site.name}-ctl") | connection_pids(f"{site.name}-gw")
    assert connection_pids(f"{site.name}-ctl") and connection_pids(f"{site.name}-gw"), closed
    # All at once (each rabbitmqctl call takes about a second): both sides lose the
    # broker together, as when it restarts.
    with ThreadPoolExecutor(len(closed)) as pool:
        list(pool.map(lambda pid: rabbitmqctl("close_connection", pid, "TME fault test"), closed))
    return closed


def wait_reconnected(site: Site, closed: set[str]) -> None:
    wait_until(
        lambda: len(connection_pids(f"{site.name}-") - closed) >= len(closed),
        timeout=20,
        what="the controller and the gateway reconnected",
    )


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_the_mqtt_broker_goes_away_and_comes_back_mid_load(
    site: Site, stop: signal.Signals
) -> None:
    """The site's Mosquitto stops (cleanly, saving its sessions; or killed, keeping only
    its last autosave) while commands wait for a stalled agent, stays away while more
    reach the gateway, and comes back: the gateway offers every unanswered command
    again. Guarantee: every run succeeds exactly once and each command writes to the
    machine once."""
    load = site.start_load()
    site.wait_for_writes(60)
    site.stall_agent_until_commands_wait()
    site.mosquitto.stop(stop)
    site.agent.resume()
    site.wait_for_more("delivered")  # journaled by the gateway while MQTT is down
    site.mosquitto.start()
    assert_each_succeeded_once(site, site.settle(load))


def test_the_gateways_host_loses_power_while_the_agent_keeps_answering(site: Site) -> None:
    """The gateway and Mosquitto (one host) are killed while the agent (another host)
    works through a backlog: its answers to commands it had accepted before (so the
    gateway had heard from it) go into the broker for the dead gateway, and the broker
    dies before its next snapshot. Both restart. Guarantee: every run succeeds exactly
    once and each command writes to the machine once (a lost answer is given again)."""
    load = site.start_load()
    site.wait_for_writes(60)
    # A slow machine: commands pile up at the agent, accepted and waiting for the bus.
    site.plant.inject_fault(  # type: ignore[attr-defined]
        PUMP_UNIT, table="holding_register", address=SPEED_SETPOINT, delay_s=0.05
    )
    wait_until(lambda: site.count_runs("accepted") >= 10, timeout=20, what="a backlog")
    site.gateway.kill()
    site.wait_for_writes(sum(site.writes().values()) + 5)  # answered into the broker
    site.mosquitto.stop(signal.SIGKILL)
    site.plant.clear_faults()  # type: ignore[attr-defined]
    site.mosquitto.start()
    site.gateway.start()
    assert_each_succeeded_once(site, site.settle(load))


def test_the_gateway_is_killed_mid_load_and_restarted_on_its_journal(site: Site) -> None:
    """SIGKILL of the gateway while commands it sent wait for a stalled agent (which
    then runs them and answers into the dead gateway's MQTT session), and a restart on
    the same journal after more commands queued up on RabbitMQ: it offers every
    unanswered command again. Guarantee: every run succeeds exactly once and each
    command writes to the machine once."""
    load = site.start_load()
    site.wait_for_writes(60)
    site.stall_agent_until_commands_wait()
    site.gateway.kill()
    site.agent.resume()
    site.wait_for_more("dispatched")  # queued on RabbitMQ while the gateway is dead
    site.gateway.start()
    assert_each_succeeded_once(site, site.settle(load))


def test_the_agent_is_killed_mid_operation_and_restarted_on_its_record(site: Site) -> None:
    """SIGKILL of the agent while a write hangs at the machine, others wait for the bus
    and more wait unanswered in its MQTT session, then a restart on the same state dir
    (the broker and the gateway offer it those again). Guarantee: no command is run twice; the
    one that was mid-operation is reported failed with an unknown outcome (never run
    again); every other run succeeds exactly once and writes to the machine once."""
    load = site.start_load()
    site.wait_for_writes(60)
    # The next request to the setpoint (a write or its read-back) answers 3 s late:
    # the command is mid-operation, holding the bus, when the agent dies.
    fault = site.plant.inject_fault(  # type: ignore[attr-defined]
        PUMP_UNIT, table="holding_register", address=SPEED_SETPOINT, delay_s=3.0, remaining=1
    )
    wait_until(lambda: fault.remaining == 0, timeout=10, what="a request hanging at the machine")
    value = site.plant.writes_to(PUMP_UNIT, SPEED_SETPOINT)[-1][0]  # type: ignore[attr-defined]
    site.wait_for_more("accepted", 5)  # more wait at the agent for the bus
    site.stall_agent_until_commands_wait()  # and more it has not even answered
    site.agent.kill()
    site.agent.start()
    runs = site.settle(load)
    run_id, state, reason, succeeded = runs[value]
    assert state == "failed" and "outcome unknown" in reason, (value, run_id, state, reason)
    assert succeeded == 0
    assert_each_succeeded_once(site, runs, except_values=frozenset({value}))
