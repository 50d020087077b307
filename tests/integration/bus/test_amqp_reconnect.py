"""RabbitMQ drops the bus's connections mid-traffic; publisher and consumer recover, nothing
confirmed is lost. Connections are closed from the broker side with rabbitmqctl."""

from __future__ import annotations

import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable

import pytest
from bus_recorder import Recorder

from tme.bus import Bus
from tme.protocol import DISPATCH_EXCHANGE, site_queue, site_routing_key

pytestmark = pytest.mark.external_service


def _rabbitmqctl(*args: str) -> str:
    result = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def _connection_pids(name: str) -> set[str]:
    """Broker-side pids of the connections whose connection_name starts with `name`."""
    lines = _rabbitmqctl("list_connections", "--no-table-headers", "pid", "client_properties")
    return {
        line.split("\t", 1)[0]
        for line in lines.splitlines()
        if f'{{"connection_name","{name}' in line
    }


@pytest.fixture
def bus_url(rabbitmq_url: str) -> str:
    """Only RabbitMQ has connections to drop (overrides the contract suite's transports)."""
    return rabbitmq_url


@pytest.fixture
def rabbitmqctl(rabbitmq_url: str) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed here")
    try:
        _rabbitmqctl("list_connections", "pid")
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"rabbitmqctl cannot reach the broker: {exc}")


def test_publisher_and_consumer_recover_and_keep_every_confirmed_message(
    rabbitmqctl: None, make_bus: Callable[..., Bus], site: str
) -> None:
    name = f"tme-reconnect-{uuid.uuid4().hex[:8]}"
    bus = make_bus(connection_name=name, reconnect_min_s=0.1, reconnect_max_s=1.0)
    bus.declare_site(site)
    got = Recorder()
    bus.consume(site_queue(site), got)
    confirmed: list[str] = []
    failed: list[str] = []
    stop = threading.Event()

    def keep_publishing() -> None:
        batch_no = 0
        while not stop.is_set():
            ids = [f"{batch_no}-{i}" for i in range(50)]
            batch = [(site_routing_key(site), b"{}", mid) for mid in ids]
            for mid, error in zip(ids, bus.publish_many(DISPATCH_EXCHANGE, batch), strict=True):
                (failed if error else confirmed).append(mid)
            batch_no += 1

    publisher = threading.Thread(target=keep_publishing, name="test-publisher")
    publisher.start()
    try:
        got.wait_for(lambda ds: len(ds) >= 500, timeout=20)
        before = _connection_pids(name)
        assert len(before) == 2, f"expected publisher and consumer connections, got {before}"
        for pid in before:
            _rabbitmqctl("close_connection", pid, "TME reconnect test")
        after_close = len(confirmed)

        # Both links come back on new connections and traffic flows again.
        got.wait_for(lambda ds: len(confirmed) >= after_close + 500, timeout=30)
        reopened = _connection_pids(name)
        assert len(reopened) == 2 and not reopened & before
    finally:
        stop.set()
        publisher.join(30)

    got.wait_for_ids(set(confirmed), timeout=30)
    assert not failed, f"{len(failed)} publishes failed instead of being retried"
