"""RabbitMQ publish throughput: TME's pipelined confirms vs one confirm per message vs
raw unconfirmed pika, in the same run against the same broker. Figures are printed,
never asserted.

    python benchmarks/bench_bus.py [--url amqp://...] [--count 20000]
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

import pika

from tme.bus import open_bus
from tme.protocol import DISPATCH_EXCHANGE, Command, site_queue, site_routing_key, utcnow

DEFAULT_URL = os.environ.get("TME_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _body(site: str) -> bytes:
    """A realistic message: one dispatched command (about 300 bytes of JSON)."""
    return Command(
        task_id=1, site=site, agent="skid-a", op="modbus.read", timeout_s=30, not_after=utcnow()
    ).to_json()


def _timed(label: str, count: int, work: Callable[[], None]) -> float:
    started = time.perf_counter()
    work()
    elapsed = time.perf_counter() - started
    rate = count / elapsed
    print(f"  {label:<46} {count:>7} msgs {elapsed:8.2f} s {rate:>10,.0f} msg/s")
    return rate


def run(url: str = DEFAULT_URL, count: int = 20_000, per_message_count: int = 2_000) -> None:
    site = f"bench-{uuid.uuid4().hex[:8]}"
    key, body = site_routing_key(site), _body(site)
    bus = open_bus(url, confirm_timeout_s=120, connection_name="tme-bench")
    bus.start()
    bus.declare_site(site)
    raw = pika.BlockingConnection(pika.URLParameters(url))
    try:
        print(f"RabbitMQ publish throughput, {len(body)}-byte messages to a quorum queue")
        batch: list[tuple[str, bytes, str | None]] = [(key, body, str(i)) for i in range(count)]

        def pipelined() -> None:
            errors = [r for r in bus.publish_many(DISPATCH_EXCHANGE, batch) if r is not None]
            assert not errors, errors[:3]

        def pipelined_batches() -> None:
            for start in range(0, count, 500):
                chunk = batch[start : start + 500]
                assert all(r is None for r in bus.publish_many(DISPATCH_EXCHANGE, chunk))

        def tme_one_by_one() -> None:
            for i in range(per_message_count):
                bus.publish(DISPATCH_EXCHANGE, key, body, message_id=str(i))

        def pika_sync_confirm() -> None:
            channel = raw.channel()
            channel.confirm_delivery()
            props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
            for _ in range(per_message_count):
                channel.basic_publish(DISPATCH_EXCHANGE, key, body, props, mandatory=True)
            channel.close()

        def pika_unconfirmed() -> None:
            channel = raw.channel()
            props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
            for _ in range(count):
                channel.basic_publish(DISPATCH_EXCHANGE, key, body, props)
            channel.close()  # a round trip: everything before it has reached the broker

        _timed("TME publish_many, one call (confirmed)", count, pipelined)
        _timed("TME publish_many, batches of 500 (confirmed)", count, pipelined_batches)
        _timed("TME publish, one confirm per message", per_message_count, tme_one_by_one)
        _timed("pika sync confirm per message", per_message_count, pika_sync_confirm)
        _timed("pika unconfirmed basic_publish (no guarantee)", count, pika_unconfirmed)
    finally:
        raw.close()
        bus.delete_queue(site_queue(site))
        bus.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--per-message-count", type=int, default=2_000)
    args = parser.parse_args(argv)
    run(args.url, args.count, args.per_message_count)


if __name__ == "__main__":
    main()
