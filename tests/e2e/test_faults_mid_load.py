"""Faults in the middle of a stream of write tasks, on the whole path with real brokers.

The promise under test (docs: DESIGN.md, "The path of a task"): every hop is
at-least-once; execution on a machine is at-most-once per command id; restarts of
RabbitMQ, the MQTT broker or the gateway lose no command. The load and the checks are
chaos_load's; test_controller_faults_mid_load.py breaks the controller's side.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from chaos_load import PUMP_UNIT, SPEED_SETPOINT, Site, assert_each_succeeded_once, running_site
from chaos_parts import Controller
from rabbitmq_admin import connection_pids, rabbitmqctl, require_rabbitmqctl
from waiting import wait_until

pytestmark = pytest.mark.external_service


@pytest.fixture
def site(tmp_path: Path, rabbitmq_url: str) -> Iterator[Site]:
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    controller = Controller(name, rabbitmq_url, f"sqlite:///{tmp_path}/tme.db", f"{name}-ctl")
    with running_site(tmp_path, rabbitmq_url, name, controller) as site:
        yield site


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
    # Restarted at once: the dead agent's hanging write still lands at the machine, and
    # the restarted agent keeps the pump's bus quiet for its request timeout (5 s, past
    # the 3 s the write hangs), so it cannot land between a new write and its read-back.
    site.agent.start()
    runs = site.settle(load)
    run_id, state, reason, succeeded = runs[value]
    assert state == "failed" and "outcome unknown" in reason, (value, run_id, state, reason)
    assert succeeded == 0
    assert_each_succeeded_once(site, runs, except_values=frozenset({value}))
