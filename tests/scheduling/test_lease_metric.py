"""tme_scheduler_leader says whether a controller holds the scheduler lease now: through
a database outage a leader cannot step down (that needs the database), yet once its
lease expired another controller may have taken over."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy.engine import Engine

from tme.config import Settings
from tme.controller import scheduling
from tme.controller.metrics import Metrics
from tme.controller.scheduling import Scheduling


def test_a_leader_that_could_not_renew_its_lease_says_so(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(scheduling, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    loop = Scheduling(engine, None, Settings(), lease_ttl_s=15)
    runtime = SimpleNamespace(
        scheduling=loop,
        events=SimpleNamespace(outage=SimpleNamespace(failing=False)),
        dispatcher=SimpleNamespace(failures=SimpleNamespace(failing=False)),
    )
    leader = Metrics(engine, runtime).registry
    loop.run_pass()
    try:
        assert loop.leading and leader.get_sample_value("tme_scheduler_leader") == 1
        clock[0] += 16  # no renewal since: the database did not answer
        assert loop.leading and leader.get_sample_value("tme_scheduler_leader") == 0
    finally:
        loop.stop()
