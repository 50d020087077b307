"""The agent CPU benchmark runs to its table on a few commands, as `make bench` runs it.

It drives a real agent process over MQTT with the wire messages and the simulated
plant; a change to those it does not follow breaks it here, not the next time
someone measures. No figure is checked: they depend on the machine."""

from __future__ import annotations

from python_module import run_module


def test_bench_agent_cpu_prints_cpu_per_command(mqtt_url: str) -> None:
    done = run_module(
        "benchmarks.bench_agent_cpu", "--mqtt", mqtt_url, "--commands", "20", "--runs", "1"
    )

    assert done.returncode == 0, done.stderr
    assert "run 1 this tree" in done.stdout and "(user " in done.stdout
    assert "this tree" in done.stdout.splitlines()[-1]
