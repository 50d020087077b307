"""What a user would build instead of TME: a Celery task that writes the pump's speed
setpoint on the simulated plant with pymodbus and reads it back.

The worker runs as `celery -A benchmarks.celery_peer worker -c 2` with the broker in
TME_BENCH_CELERY_BROKER and the plant's port in TME_BENCH_PLANT_PORT.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

QUEUE = os.environ.get("TME_BENCH_CELERY_QUEUE", "tme-bench-celery")

app = Celery(
    "tme_bench_peer",
    broker=os.environ.get("TME_BENCH_CELERY_BROKER", "amqp://guest:guest@127.0.0.1:5672//"),
    backend="rpc://",
)
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_prefetch_multiplier=32,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_client: Any = None


def _modbus() -> Any:
    """One connection per worker process, opened on first use (after the fork)."""
    global _client
    if _client is None:
        from pymodbus.client import ModbusTcpClient

        _client = ModbusTcpClient("127.0.0.1", port=int(os.environ["TME_BENCH_PLANT_PORT"]))
        _client.connect()
    return _client


@app.task(name="bench.write_and_verify")
def write_and_verify(value: int) -> dict[str, Any]:
    client = _modbus()
    written = client.write_register(0, value, device_id=1)
    if written.isError():
        raise RuntimeError(f"write failed: {written}")
    read = client.read_holding_registers(0, count=1, device_id=1)
    if read.isError() or read.registers[0] != value:
        raise RuntimeError(f"read-back mismatch: {read}")
    return {"speed_setpoint": value}


@app.task(name="bench.noop")
def noop() -> None:
    return None
