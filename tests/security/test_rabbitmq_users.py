"""scripts/rabbitmq-users.sh against the real local RabbitMQ: a gateway's user configures
nothing, consumes its own site's queue only and publishes only to tme.events, with its own
site's routing keys; the controller's user declares everything, site queues included. A
gateway run with declare_topology=False works with that user, also when it starts before
its site's queue or the controller's queue exists.

The script runs rabbitmqctl, which needs the broker's host and root (or the rabbitmq
user); everything happens in a virtual host of its own, deleted afterwards with the
users the test made.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from commands import make_command
from controller_queue import ControllerQueue
from pika.adapters.blocking_connection import BlockingChannel
from waiting import wait_until

from tme.agents.agent import DeviceAgent
from tme.agents.agent_config import parse_agent_config
from tme.agents.gateway import Gateway, GatewayConfig
from tme.agents.runner import AgentThread
from tme.bus import Bus, open_bus
from tme.bus.amqp_admin import admin_channel
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.config import Settings
from tme.controller.runtime import ControllerRuntime
from tme.controller.services.tasks import create_task
from tme.controller.store.db import session_scope
from tme.controller.store.models import Run
from tme.errors import BusError
from tme.protocol import (
    DISPATCH_EXCHANGE,
    EVENTS_EXCHANGE,
    Command,
    Event,
    Presence,
    site_queue,
    site_routing_key,
)
from tme.schemas import TaskCreate

pytestmark = pytest.mark.external_service

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "rabbitmq-users.sh"
RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        [RABBITMQCTL, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


@dataclass
class Broker:
    vhost: str
    site: str
    other: str
    password: str
    controller_user: str

    def url(self, user: str, password: str) -> str:
        return (
            f"amqp://{user}:{quote(password, safe='')}@127.0.0.1:5672/{quote(self.vhost, safe='')}"
        )

    @property
    def admin(self) -> pika.URLParameters:
        return pika.URLParameters(self.url("guest", "guest"))

    @property
    def gateway_url(self) -> str:
        return self.url(f"tme-gateway-{self.site}", self.password)

    @property
    def controller_url(self) -> str:
        return self.url(self.controller_user, self.password)


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[Broker]:
    """A vhost of its own with the script's users (a controller, and a gateway for `site`)."""
    if shutil.which(RABBITMQCTL) is None:
        pytest.skip(f"{RABBITMQCTL} is not on this machine")
    tag = uuid.uuid4().hex[:8]
    made = Broker(
        f"tme-test-{tag}",
        f"gw-{tag}",
        f"other-{tag}",
        f"pw-{uuid.uuid4().hex}",
        f"tme-controller-test-{tag}",
    )
    try:
        rabbitmqctl("add_vhost", made.vhost)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"rabbitmqctl cannot reach the broker here: {exc.stderr.strip()}")
    # Each rabbitmqctl starts an Erlang VM (0.5-1 s): the test's own calls, independent
    # of the script's, run beside it.
    try:
        with at_once(["set_permissions", "-p", made.vhost, "guest", ".*", ".*", ".*"]):
            done = run_script(made)
        assert done.returncode == 0, done.stderr
        assert made.password not in done.stdout  # a given password is never printed
        yield made
    finally:
        with at_once(
            ["delete_vhost", made.vhost],  # its queues and exchanges go with it
            # a user the script did not get to make is not there (exit 67, EX_NOUSER)
            *(["delete_user", user] for user in (f"tme-gateway-{made.site}", made.controller_user)),
            allowed=(0, 67),
        ):
            pass


@contextmanager
def at_once(*commands: list[str], allowed: tuple[int, ...] = (0,)) -> Iterator[None]:
    """Run the rabbitmqctl `commands` side by side while the block runs; after it, wait
    for them and fail on an exit status not `allowed`."""
    running = [
        subprocess.Popen([RABBITMQCTL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in commands
    ]
    try:
        yield
    finally:
        for args, process in zip(commands, running, strict=True):
            _out, err = process.communicate(timeout=60)
            assert process.returncode in allowed, f"rabbitmqctl {args}: {err.decode()}"


def run_script(broker: Broker) -> subprocess.CompletedProcess[str]:
    var = "TME_GATEWAY_PASSWORD_" + broker.site.upper().replace("-", "_").replace(".", "_")
    env = {
        **os.environ,
        var: broker.password,
        "TME_CONTROLLER_USER": broker.controller_user,
        "TME_CONTROLLER_PASSWORD": broker.password,
        "RABBITMQCTL": RABBITMQCTL,
    }
    return subprocess.run(
        ["bash", str(SCRIPT), "--vhost", broker.vhost, "controller", broker.site],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def controller_bus(broker: Broker) -> Iterator[Bus]:
    """The controller's bus on the scripted controller user: start() declares the exchanges."""
    bus = open_bus(broker.controller_url, confirm_timeout_s=10)
    bus.start()
    yield bus
    bus.stop()


class Edge:
    """Starts a non-declaring gateway on the scripted gateway user, and agents; stops them."""

    def __init__(self, broker: Broker, mqtt_url: str, state_dir: Path) -> None:
        self.broker = broker
        self.mqtt_url = mqtt_url
        self.state_dir = state_dir
        self.started: list[Gateway | AgentThread] = []

    def gateway(self) -> Gateway:
        gateway = Gateway(
            GatewayConfig(
                site=self.broker.site,
                bus_url=self.broker.gateway_url,
                mqtt_url=self.mqtt_url,
                state_dir=self.state_dir / "gateway",
                declare_topology=False,
            )
        )
        gateway.start()  # never raises for a missing queue: it waits for it
        self.started.append(gateway)
        return gateway

    def agent(self, name: str) -> AgentThread:
        data = {
            "site": self.broker.site,
            "agent": name,
            "mqtt": self.mqtt_url,
            "state_dir": str(self.state_dir / name),
        }
        runner = AgentThread(DeviceAgent(parse_agent_config(data))).start()
        self.started.append(runner)
        return runner

    def stop(self) -> None:
        for part in reversed(self.started):
            part.stop()


@pytest.fixture
def edge(broker: Broker, mqtt_url: str, tmp_path: Path) -> Iterator[Edge]:
    made = Edge(broker, mqtt_url, tmp_path)
    yield made
    made.stop()


def noop(site: str, agent: str) -> Command:
    return make_command(site, agent)


def succeeded(command: Command) -> Callable[[Event | Presence], bool]:
    return lambda i: isinstance(i, Event) and i.command_id == command.id and i.type == "succeeded"


def declare_as_controller(bus: Bus, broker: Broker) -> None:
    """What the controller's user declares: its queue and both sites' queues."""
    bus.declare_events_queue()
    bus.declare_site(broker.site)
    bus.declare_site(broker.other)


def test_non_declaring_gateway_runs_commands_with_the_scripted_users(
    broker: Broker, controller_bus: Bus, edge: Edge
) -> None:
    # the controller's user declares its queue and both sites' queues (the gateways cannot)
    declare_as_controller(controller_bus, broker)
    events = ControllerQueue(controller_bus)
    try:
        gateway = edge.gateway()
        edge.agent("skid-a")
        wait_until(lambda: gateway.consuming, timeout=20, what="the gateway consuming")
        command, elsewhere = noop(broker.site, "skid-a"), noop(broker.other, "skid-a")
        for cmd in (command, elsewhere):
            controller_bus.publish(
                DISPATCH_EXCHANGE, site_routing_key(cmd.site), cmd.to_json(), cmd.id
            )
        events.wait_for(succeeded(command), "the command's result")
        events.wait_for(
            lambda i: isinstance(i, Presence) and i.role == "gateway", "the gateway's presence"
        )
    finally:
        events.consumer.stop()
    assert not any(isinstance(i, Event) and i.command_id == elsewhere.id for i in events.items)
    # the other site's command is still in its queue, untouched
    with admin_channel(broker.admin) as channel:
        method, _properties, body = channel.basic_get(site_queue(broker.other), auto_ack=True)
        assert method is not None and Command.from_json(body).id == elsewhere.id


Action = Callable[[BlockingChannel], object]


def refused(broker: Broker, action: Action) -> bool:
    """Whether the broker closes the gateway's channel with 403 ACCESS_REFUSED for `action`."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.gateway_url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        try:
            action(channel)
        except pika.exceptions.ChannelClosedByBroker as exc:
            return exc.reply_code == 403 and "ACCESS_REFUSED" in exc.reply_text
        return False
    finally:
        if connection.is_open:
            connection.close()


def publish(exchange: str, key: str) -> Action:
    return lambda channel: channel.basic_publish(exchange, key, b"{}")


def delete_exchange(exchange: str) -> Action:
    return lambda channel: channel.exchange_delete(exchange)


def delete_queue(queue: str) -> Action:
    return lambda channel: channel.queue_delete(queue)


def get(queue: str) -> Action:
    return lambda channel: channel.basic_get(queue, auto_ack=True)


def consume(queue: str) -> Action:
    return lambda channel: channel.basic_consume(queue, lambda *_: None)


def bind(queue: str, exchange: str, key: str) -> Action:
    return lambda channel: channel.queue_bind(queue, exchange, routing_key=key)


def test_gateway_user_can_neither_delete_nor_read_nor_publish_elsewhere(
    broker: Broker, controller_bus: Bus, tmp_path: Path
) -> None:
    declare_as_controller(controller_bus, broker)
    own_queue, other_queue = site_queue(broker.site), site_queue(broker.other)

    # what a non-declaring gateway does: ask whether its queue exists, consume it, publish
    assert not refused(broker, lambda channel: channel.queue_declare(own_queue, passive=True))
    assert not refused(broker, consume(own_queue))
    assert not refused(broker, publish(EVENTS_EXCHANGE, f"{broker.site}.skid-a.result"))

    # no deleting the topology, the controller's queue or even its own queue
    for exchange in (DISPATCH_EXCHANGE, EVENTS_EXCHANGE):
        assert refused(broker, delete_exchange(exchange)), exchange
    for queue in (CONTROLLER_EVENTS_QUEUE, own_queue, other_queue):
        assert refused(broker, delete_queue(queue)), queue
    # no declaring anything (a queue of its own could tap tme.events)
    assert refused(broker, lambda channel: channel.queue_declare(f"{own_queue}.tap"))
    assert refused(broker, lambda channel: channel.exchange_declare("tme.mine", "topic"))
    # no binding: no other site's commands into its own queue, no events into it either
    assert refused(broker, bind(own_queue, DISPATCH_EXCHANGE, site_routing_key(broker.other)))
    assert refused(broker, bind(own_queue, EVENTS_EXCHANGE, "#"))
    # no reading another site's queue or the controller's
    for queue in (other_queue, CONTROLLER_EVENTS_QUEUE):
        assert refused(broker, get(queue)), queue
        assert refused(broker, consume(queue)), queue
    # no commands, and no events in another site's name
    assert refused(broker, publish(DISPATCH_EXCHANGE, site_routing_key(broker.site)))
    assert refused(broker, publish(DISPATCH_EXCHANGE, site_routing_key(broker.other)))
    assert refused(broker, publish(EVENTS_EXCHANGE, f"{broker.other}.skid-a.evt"))

    # a gateway left declaring its topology stops at start, and says which setting to change
    gateway = Gateway(
        GatewayConfig(
            site=broker.site,
            bus_url=broker.gateway_url,
            mqtt_url="mqtt://127.0.0.1:1",  # never reached: it stops before MQTT
            state_dir=tmp_path,
        )
    )
    with pytest.raises(BusError, match=r"ACCESS_REFUSED.*gateway\.declare_topology: false"):
        gateway.start()
    gateway.bus.stop()
    assert gateway.journal is not None
    gateway.journal.close()

    # everything is still in place
    with admin_channel(broker.admin) as channel:
        for queue in (CONTROLLER_EVENTS_QUEUE, own_queue, other_queue):
            channel.queue_declare(queue, passive=True)
        for exchange in (DISPATCH_EXCHANGE, EVENTS_EXCHANGE):
            channel.exchange_declare(exchange, passive=True)


def controller_arrives(bus: Bus, broker: Broker, gateway: Any, what: str) -> ControllerQueue:
    """The controller declares its queue and the site's: the waiting gateway starts
    consuming, and its presence, published before, reaches the controller."""
    bus.declare_events_queue()
    bus.declare_site(broker.site)
    events = ControllerQueue(bus)
    try:
        wait_until(lambda: gateway.consuming, timeout=30, what="the gateway consuming")
        events.wait_for(
            lambda i: isinstance(i, Presence) and i.role == "gateway" and i.state == "online",
            what,
        )
    except BaseException:
        events.consumer.stop()
        raise
    return events


def test_gateway_started_first_waits_for_its_queue_and_keeps_its_events(
    broker: Broker,
    controller_bus: Bus,
    edge: Edge,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # the exchanges exist (the controller ran once), but neither its queue nor the site's
    gateway = edge.gateway()
    wait_until(
        lambda: any("does not exist yet" in r.getMessage() for r in caplog.records),
        timeout=20,
        what="the gateway saying it waits for its site's queue",
    )
    # its own presence found no queue on tme.events: held and retried, not dropped
    wait_until(
        lambda: any(
            "bus publish" in r.getMessage() and "no queue bound" in r.getMessage()
            for r in caplog.records
        ),
        timeout=20,
        what="the gateway's presence being unroutable",
    )
    assert not gateway.consuming

    events = controller_arrives(
        controller_bus, broker, gateway, "the presence published before the controller's queue"
    )
    try:
        edge.agent("skid-a")
        command = noop(broker.site, "skid-a")
        controller_bus.publish(
            DISPATCH_EXCHANGE, site_routing_key(broker.site), command.to_json(), command.id
        )
        events.wait_for(succeeded(command), "the command's result")
    finally:
        events.consumer.stop()


def test_gateway_started_before_the_controller_ever_ran_catches_up(
    broker: Broker, edge: Edge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="tme.bus.amqp_link")
    # a fresh vhost: not even the exchanges exist
    gateway = edge.gateway()
    wait_until(
        lambda: any("does not exist yet" in r.getMessage() for r in caplog.records),
        timeout=20,
        what="the gateway saying it waits for its site's queue",
    )

    # its presence finds no tme.events exchange: the broker closes the publisher's channel,
    # and the link reopens it with growing pauses, logging it once (not five times a
    # second), then at DEBUG
    def publisher_lost() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "tme.bus.amqp_link" and "no exchange 'tme.events'" in r.getMessage()
        ]

    wait_until(lambda: len(publisher_lost()) >= 4, timeout=30, what="four channel closes")
    times = [r.created for r in publisher_lost()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[2] > 2 * gaps[0], gaps
    assert [r.levelno for r in publisher_lost()][:4] == [logging.DEBUG] * 4
    (failed,) = [r for r in caplog.records if r.levelno >= logging.WARNING and "link" in r.name]
    assert failed.getMessage() == "bus link publisher failed; reconnecting with backoff"
    assert failed.exc_info is not None and "no exchange 'tme.events'" in str(failed.exc_info[1])

    controller_bus = open_bus(broker.controller_url, confirm_timeout_s=10)
    controller_bus.start()
    try:
        events = controller_arrives(
            controller_bus, broker, gateway, "the presence published before the exchange"
        )
        events.consumer.stop()
    finally:
        controller_bus.stop()


def test_controller_on_its_scripted_user_serves_a_gateway_that_declares_nothing(
    broker: Broker, edge: Edge, app_engine: Any
) -> None:
    """The whole path on least-privilege users: the gateway starts first; the controller
    declares its site's queue when the gateway announces itself, before any command."""
    settings = Settings.model_validate(
        {"broker": {"url": broker.controller_url, "confirm_timeout_s": 10}}
    )
    runtime = ControllerRuntime(settings, app_engine)
    gateway = edge.gateway()
    runtime.start()
    try:
        wait_until(lambda: gateway.consuming, timeout=45, what="the gateway consuming")
        edge.agent("skid-a")
        body = TaskCreate.model_validate(
            {"name": "noop", "op": "noop", "target": {"site": broker.site, "agent": "skid-a"}}
        )
        with session_scope(app_engine) as session:
            task, _ = create_task(session, body, on_run_ready=runtime.on_run_ready)
            run_id = task.latest_run_id

        def state() -> str | None:
            with session_scope(app_engine) as session:
                run = session.get(Run, run_id)
                return run.state if run is not None else None

        wait_until(lambda: state() == "succeeded", timeout=30, what="the run succeeding")
    finally:
        runtime.stop()
