"""The controller benchmark runs to its table on a few tasks, as `make bench` runs it.

It drives the controller's internals directly (create, dispatcher records, event
application, settling, audit), so a change there that it does not follow breaks it;
this keeps such a break from waiting for the next time someone measures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_controller_prints_every_stage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_controller", "--tasks", "20"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )

    assert done.returncode == 0, done.stderr
    for stage in ("create", "dispatch confirmed", "hop succeeded", "settle", "audit row"):
        assert stage in done.stdout
    assert "total, controller" in done.stdout and "total, baseline" in done.stdout
