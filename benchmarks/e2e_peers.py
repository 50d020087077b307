"""The peers of the end-to-end benchmark, on the same broker in the same run: raw pika
publish/consume, and what a user would build instead of TME, a Celery worker writing
the same simulated Modbus register; and the row every figure is printed as."""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.e2e_roles import SETPOINT


@dataclass
class Row:
    name: str
    count: int
    rate: float | None = None
    p50: float | None = None
    p99: float | None = None
    note: str = ""
    cpu: str = ""  # CPU per task by process (CpuMeter.report), for the throughput rows


def percentiles(latencies: list[float]) -> tuple[float | None, float | None]:
    """p50 and p99 of sorted latencies (None when there are none)."""
    if not latencies:
        return None, None
    if len(latencies) == 1:
        return latencies[0], latencies[0]
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return q[49], q[98]


def raw_pika(amqp: str, count: int) -> Row:
    """Persistent messages through a quorum queue: publish all, consume and ack all."""
    import pika

    from tme.protocol import Command, utcnow

    body = Command(
        task_id=1, site="bench", agent="a000", op="modbus.write", timeout_s=30, not_after=utcnow()
    ).to_json()
    queue = f"tme-bench-raw-{uuid.uuid4().hex[:8]}"
    done = threading.Event()
    ready = threading.Event()

    def consume() -> None:
        connection = pika.BlockingConnection(pika.URLParameters(amqp))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)
        seen = 0

        def on_message(ch: Any, method: Any, _props: Any, _body: bytes) -> None:
            nonlocal seen
            seen += 1
            ch.basic_ack(method.delivery_tag)
            if seen == count:
                done.set()
                ch.stop_consuming()

        channel.basic_consume(queue, on_message)
        ready.set()
        channel.start_consuming()
        connection.close()

    connection = pika.BlockingConnection(pika.URLParameters(amqp))
    channel = connection.channel()
    channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    ready.wait(30)
    props = pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent)
    started = time.perf_counter()
    for _ in range(count):
        channel.basic_publish("", queue, body, props)
    finished = done.wait(300)
    elapsed = time.perf_counter() - started
    consumer.join(30)
    channel.queue_delete(queue)
    connection.close()
    note = "unconfirmed publish, one consumer" + ("" if finished else "; TIMED OUT")
    return Row("raw pika publish+consume", count, count / elapsed, note=note)


def celery_peer(
    amqp: str, count: int, paced_s: float, paced_rate: float, plant_port: int
) -> list[Row]:
    import subprocess

    queue = f"tme-bench-celery-{uuid.uuid4().hex[:8]}"
    os.environ.update(
        TME_BENCH_CELERY_QUEUE=queue,
        TME_BENCH_CELERY_BROKER=amqp.replace("%2F", ""),
        TME_BENCH_PLANT_PORT=str(plant_port),
    )
    from benchmarks import celery_peer as peer

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "benchmarks.celery_peer", "worker", "-c", "2",
         "-P", "prefork", "-Q", queue, "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        peer.noop.apply_async(queue=queue).get(timeout=60)
        peer.write_and_verify.apply_async((1,), queue=queue).get(timeout=30)
        started = time.perf_counter()
        results = [
            peer.write_and_verify.apply_async((SETPOINT,), queue=queue) for i in range(count)
        ]
        for result in results:
            result.get(timeout=300)
        rate = count / (time.perf_counter() - started)
        latencies = []
        start = time.monotonic()
        for i in range(int(paced_s * paced_rate)):
            pause = start + i / paced_rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent = time.perf_counter()
            peer.write_and_verify.apply_async((SETPOINT,), queue=queue).get(timeout=30)
            latencies.append((time.perf_counter() - sent) * 1000)
        latencies.sort()
        return [
            Row("Celery 2 procs, write+verify", count, rate, note="burst, rpc:// results"),
            Row(f"Celery paced {paced_rate:.0f}/s", len(latencies), None, *percentiles(latencies)),
        ]
    finally:
        worker.terminate()
        worker.wait(60)
        with peer.app.connection_for_write() as connection:  # its queue is the run's own
            connection.default_channel.queue_delete(queue)
        peer.app.close()
