"""Ways of creating the benchmark's tasks: in-process bursts, REST bursts (one task per
request from several threads, or batches), and paced creates at a fixed rate.

Each returns {run id: when its create was sent}, for latency measured to the run's
final state.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from typing import Any

from benchmarks.e2e_procs import start_child
from benchmarks.e2e_roles import task_fields

REST_THREADS = 8
SERVICE_CHUNK = 100  # tasks per transaction on the service-level path


def create_by_service(app: Any, site: str, agents: int, first: int, count: int) -> dict[str, float]:
    """In-process task service, SERVICE_CHUNK tasks per transaction (no HTTP)."""
    from tme.controller.services.tasks import create_tasks
    from tme.controller.store.db import session_scope
    from tme.schemas import TaskCreate

    created: dict[str, float] = {}
    hook = app.state.on_run_ready
    for start in range(first, first + count, SERVICE_CHUNK):
        sent = time.time()
        numbers = range(start, min(start + SERVICE_CHUNK, first + count))
        items = [TaskCreate.model_validate(task_fields(site, agents, i)) for i in numbers]
        with session_scope(app.state.engine) as session:
            made = create_tasks(session, items, on_run_ready=hook)
            ids = [str(task.latest_run_id) for task, _ in made]
        created.update((r, sent) for r in ids)
    return created


def create_by_rest(
    url: str,
    token: str,
    site: str,
    agents: int,
    count: int,
    stack: ExitStack,
    *,
    first: int = 0,
    rate: float = 0.0,
) -> tuple[dict[str, float], float]:
    """REST_THREADS SDK clients in a child process (the load never shares the controller's
    interpreter), as fast as they go or paced at `rate` tasks/s; returns the runs and
    the creation rate."""
    import json

    load = start_child(
        stack,
        "rest-load",
        "--url", url, "--token", token, "--site", site, "--agents", str(agents),
        "--count", str(count), "--threads", str(REST_THREADS), "--first", str(first),
        "--rate", str(rate),
    )  # fmt: skip
    load.send("go")
    result = json.loads(load.read_line(timeout=600))
    load.stop()
    if result["errors"]:  # the row counts only the tasks created: say why some are missing
        _, first_error = result["errors"][0]
        print(
            f"  !! {len(result['errors'])} creates failed, the first: {first_error}",
            file=sys.stderr,
        )
    rate = count / (result["ended"] - result["started"])
    return {run: sent for run, sent in result["created"]}, rate


def create_by_rest_batch(
    url: str, token: str, site: str, agents: int, first: int, count: int
) -> dict[str, float]:
    """One SDK client, SERVICE_CHUNK tasks per request (POST /api/v1/tasks/batch)."""
    import tme

    created: dict[str, float] = {}
    with tme.Client(url, token, timeout=60) as client:
        for start in range(first, first + count, SERVICE_CHUNK):
            numbers = range(start, min(start + SERVICE_CHUNK, first + count))
            sent = time.time()
            made = client.tasks.create_many([task_fields(site, agents, i) for i in numbers])
            created.update((str(task.latest_run_id), sent) for task in made)
    return created


def create_paced(
    url: str, token: str, site: str, agents: int, seconds: float, rate: float, stack: ExitStack
) -> dict[str, float]:
    """SDK clients in a child process sending at `rate` tasks/s; latency is per task."""
    count = int(seconds * rate)
    created, _ = create_by_rest(url, token, site, agents, count, stack, first=100_000, rate=rate)
    return created


def create_paced_service(
    app: Any, site: str, agents: int, seconds: float, rate: float
) -> dict[str, float]:
    """In-process creates (one transaction each) at `rate` tasks/s: the delivery
    path's latency without the REST request in front of it."""

    def create(i: int) -> str:
        (run_id,) = create_by_service(app, site, agents, 200_000 + i, 1)
        return run_id

    return _paced(seconds, rate, create)


def _paced(seconds: float, rate: float, create: Any) -> dict[str, float]:
    """Call create(i) `rate` times per second (one caller: a slow create falls behind)."""
    created: dict[str, float] = {}
    start = time.monotonic()
    for i in range(int(seconds * rate)):
        pause = start + i / rate - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # pacing the load is the point here
        sent = time.time()
        created[create(i)] = sent
    return created


def offered(created: dict[str, float]) -> str:
    """What rate the paced caller managed to offer (below its rate when it fell behind)."""
    sent = sorted(created.values())
    if len(sent) < 2 or sent[-1] == sent[0]:
        return ""
    return f"offered {(len(sent) - 1) / (sent[-1] - sent[0]):.0f}/s"
