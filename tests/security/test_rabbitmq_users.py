"""scripts/rabbitmq-users.sh against the real local RabbitMQ: a gateway's user consumes its
own site's queue only and publishes only to tme.events, with its own site's routing keys.

The script runs rabbitmqctl, which needs the broker's host and root (or the rabbitmq
user); everything happens in a virtual host of its own, deleted afterwards with the
users the test made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel

from tme.bus.amqp import AmqpBus
from tme.bus.amqp_admin import admin_channel, declare_queue, declare_topology
from tme.bus.options import BusOptions
from tme.bus.topology import CONTROLLER_EVENTS_QUEUE
from tme.protocol import DISPATCH_EXCHANGE, EVENTS_EXCHANGE, site_queue, site_routing_key

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

    def url(self, user: str, password: str) -> str:
        return (
            f"amqp://{user}:{quote(password, safe='')}@127.0.0.1:5672/{quote(self.vhost, safe='')}"
        )

    @property
    def admin(self) -> pika.URLParameters:
        return pika.URLParameters(self.url("guest", "guest"))

    @property
    def gateway(self) -> pika.URLParameters:
        return pika.URLParameters(self.url(f"tme-gateway-{self.site}", self.password))


@pytest.fixture
def broker(rabbitmq_url: str) -> Iterator[Broker]:
    if shutil.which(RABBITMQCTL) is None:
        pytest.skip(f"{RABBITMQCTL} is not on this machine")
    tag = uuid.uuid4().hex[:8]
    made = Broker(f"tme-test-{tag}", f"gw-{tag}", f"other-{tag}", f"pw-{uuid.uuid4().hex}")
    try:
        rabbitmqctl("list_users", "--silent")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"rabbitmqctl cannot reach the broker here: {exc.stderr.strip()}")
    rabbitmqctl("add_vhost", made.vhost)
    try:
        rabbitmqctl("set_permissions", "-p", made.vhost, "guest", ".*", ".*", ".*")
        # what the controller does first: the topology and each site's queue
        with admin_channel(made.admin) as channel:
            declare_topology(channel)
            for site in (made.site, made.other):
                declare_queue(
                    channel, site_queue(site), DISPATCH_EXCHANGE, site_routing_key(site), 5
                )
            declare_queue(channel, CONTROLLER_EVENTS_QUEUE, EVENTS_EXCHANGE, "#", 5)
        yield made
    finally:
        rabbitmqctl("delete_vhost", made.vhost)  # its queues and exchanges go with it
        users = rabbitmqctl("list_users", "--silent")
        if f"tme-gateway-{made.site}" in users:
            rabbitmqctl("delete_user", f"tme-gateway-{made.site}")


def run_script(broker: Broker) -> subprocess.CompletedProcess[str]:
    var = "TME_GATEWAY_PASSWORD_" + broker.site.upper().replace("-", "_").replace(".", "_")
    env = {**os.environ, var: broker.password, "RABBITMQCTL": RABBITMQCTL}
    return subprocess.run(
        ["bash", str(SCRIPT), "--vhost", broker.vhost, "gateways", broker.site],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


Action = Callable[[BlockingChannel], object]


def refused(broker: Broker, action: Action) -> bool:
    """Whether the broker closes the gateway's channel with 403 ACCESS_REFUSED for `action`."""
    connection = pika.BlockingConnection(broker.gateway)
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


def test_gateway_user_reads_its_queue_and_writes_only_events(broker: Broker) -> None:
    done = run_script(broker)
    assert done.returncode == 0, done.stderr
    assert broker.password not in done.stdout  # a given password is never printed

    # a command for this site, and one for the other
    with admin_channel(broker.admin) as channel:
        for site in (broker.site, broker.other):
            channel.basic_publish(DISPATCH_EXCHANGE, site_routing_key(site), site.encode())

    # what the gateway itself does at start: declare, bind, consume, publish
    bus = AmqpBus(broker.url(f"tme-gateway-{broker.site}", broker.password), BusOptions())
    bus.start()
    try:
        bus.declare_site(broker.site)
        bus.declare_events_queue()
        bus.publish(EVENTS_EXCHANGE, f"{broker.site}.skid-a.evt", b'{"from": "gateway"}')
    finally:
        bus.stop()

    connection = pika.BlockingConnection(broker.gateway)
    try:
        channel = connection.channel()
        method, _properties, body = channel.basic_get(site_queue(broker.site), auto_ack=True)
        assert method is not None and body == broker.site.encode()
    finally:
        connection.close()

    # its event reached the controller's queue
    with admin_channel(broker.admin) as channel:
        method, _properties, body = channel.basic_get(CONTROLLER_EVENTS_QUEUE, auto_ack=True)
        assert method is not None and body == b'{"from": "gateway"}'

    other_queue = site_queue(broker.other)
    assert refused(broker, lambda channel: channel.basic_get(other_queue, auto_ack=True))
    assert refused(broker, lambda channel: channel.basic_consume(other_queue, lambda *a: None))
    assert refused(
        broker, lambda channel: channel.basic_get(CONTROLLER_EVENTS_QUEUE, auto_ack=True)
    )
    assert refused(broker, publish(DISPATCH_EXCHANGE, site_routing_key(broker.site)))
    assert refused(broker, publish(DISPATCH_EXCHANGE, site_routing_key(broker.other)))
    # no other site's events, and no other site's commands bound into its own queue
    assert refused(broker, publish(EVENTS_EXCHANGE, f"{broker.other}.skid-a.evt"))
    own_queue = site_queue(broker.site)
    assert refused(
        broker,
        lambda channel: channel.queue_bind(
            own_queue, DISPATCH_EXCHANGE, routing_key=site_routing_key(broker.other)
        ),
    )
    assert not refused(broker, publish(EVENTS_EXCHANGE, f"{broker.site}.skid-a.result"))

    # the other site's command is still there, untouched
    with admin_channel(broker.admin) as channel:
        method, _properties, body = channel.basic_get(other_queue, auto_ack=True)
        assert method is not None and body == broker.other.encode()
