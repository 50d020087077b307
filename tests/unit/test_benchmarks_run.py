"""The controller benchmark runs to its table on a few tasks, as `make bench` runs it.

It drives the controller's internals directly (create, dispatcher records, event
application, settling, audit), so a change there that it does not follow breaks it;
this keeps such a break from waiting for the next time someone measures."""

from __future__ import annotations

from python_module import run_module


def test_bench_controller_prints_every_stage() -> None:
    done = run_module("benchmarks.bench_controller", "--tasks", "20")

    assert done.returncode == 0, done.stderr
    for stage in ("create", "dispatch confirmed", "hop succeeded", "settle", "audit row"):
        assert stage in done.stdout
    assert "total, controller" in done.stdout and "total, baseline" in done.stdout
