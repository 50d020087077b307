"""The stop benchmark runs to its table, as `make bench` runs it, over the real brokers:
a change to the stop's path or its answer that it does not follow breaks it here, not
the next time someone measures."""

from __future__ import annotations

import pytest
from python_module import run_module

pytestmark = pytest.mark.external_service


def test_bench_stop_prints_a_device_and_a_site_stop_and_a_cancel() -> None:
    done = run_module("benchmarks.bench_stop", "--rounds", "1")

    assert done.returncode == 0, done.stderr
    assert "POST /devices/pump1/stop           pump1" in done.stdout
    for device in ("pump1", "conveyor1"):
        assert f"POST /sites/<site>/stop (2 agents) {device}" in done.stdout
    assert "POST /runs/<id>/cancel             sleep" in done.stdout
