"""The soak benchmark's arithmetic: which window each task, failed create and sample
falls in, and what its summary calls met or missed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """benchmarks.bench_soak, imported from the checkout (benchmarks/ is no package of TME's)."""
    monkeypatch.syspath_prepend(str(REPO))
    import benchmarks.bench_soak

    return benchmarks.bench_soak


def _finals(soak: ModuleType, done: dict[str, tuple[float, str]]) -> Any:
    finals = soak.e2e.Finals()
    for run, (at, outcome) in done.items():
        finals.at[run] = at
        finals.outcome[run] = outcome
    return finals


def test_tasks_failed_creates_and_samples_fall_in_the_window_of_their_time(
    soak: ModuleType,
) -> None:
    sample = soak.Sample
    created = {"a": 100.0, "b": 105.0, "c": 125.0, "d": 130.0}
    done = {"a": (100.02, "succeeded"), "b": (105.5, "failed"), "c": (125.01, "succeeded")}
    result = {"started": 100.0, "ended": 139.0, "errors": [(131.0, "ServerError: 503")]}
    samples = [
        sample(101.0, outbox=3, queued=1, in_flight=2, rss_mb={"controller": 100.0}),
        sample(110.0, outbox=1, queued=4, in_flight=5, rss_mb={"controller": 101.0}),
        sample(121.0, outbox=0, queued=0, in_flight=1, rss_mb={"controller": 102.0}),
        sample(500.0, outbox=99, queued=99, in_flight=99, rss_mb={"controller": 999.0}),  # after
    ]

    first, second = soak.windows(_finals(soak, done), created, result, samples, 20.0)

    assert (first.sent, first.done, first.not_ok, first.errors) == (2, 2, 1, 0)
    # latencies of the window's finished tasks, failed ones too: 20 and 500 ms
    assert (first.p50, first.p99) == pytest.approx(soak.percentiles([20.0, 500.0]))
    assert (first.outbox, first.queued, first.in_flight) == (3, 4, 5)  # the highest sampled
    assert first.rss_mb == {"controller": 101.0}  # the window's last sample
    assert (second.sent, second.done, second.not_ok, second.errors) == (2, 1, 0, 1)
    assert (second.outbox, second.queued, second.in_flight) == (0, 0, 1)


def test_the_summary_misses_growth_a_slow_window_and_lost_runs(
    soak: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = soak.Sample
    created = {"a": 0.0, "b": 30.0}
    done = {"a": (0.1, "succeeded"), "b": (32.0, "succeeded")}
    samples = [
        sample(10.0, 0, 0, 1, {"controller": 100.0, "gateway": 40.0, "agents": 30.0}),
        sample(50.0, 0, 0, 9, {"controller": 105.0, "gateway": 48.0, "agents": 30.0}),
    ]
    result = {"started": 0.0, "ended": 59.0, "errors": []}
    out = soak.windows(_finals(soak, done), created, result, samples, 20.0)

    soak.summarise(out, errors=0, lost=1, rate=4.0, agents=2)

    said = capsys.readouterr().out
    assert "MISS p99 <= 1000 ms in every window: worst 2000.0 ms" in said
    assert (
        "MISS backlog bounded: runs in flight at most 9 in the last window, 1 in the first" in said
    )
    assert "MET  controller RSS growth < 10%: 100.0 -> 105.0 MB (+5.0%)" in said
    assert "MISS gateway RSS growth < 10%: 40.0 -> 48.0 MB (+20.0%)" in said
    assert "MET  agents RSS growth < 10%: 30.0 -> 30.0 MB (+0.0%; +0.00 MB an agent)" in said
    assert "MISS no errors: 0 creates failed, 1 runs never final, 0 not succeeded" in said


def test_a_last_window_without_samples_is_not_read_as_memory_gone(
    soak: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """The last few sends make a window of their own that no sample fell in: its RSS is
    unknown, not 0 MB (which read as -100 %, met)."""
    sample = soak.Sample
    created = {"a": 0.0, "b": 25.0, "c": 40.5}
    done = {run: (sent + 0.02, "succeeded") for run, sent in created.items()}
    samples = [
        sample(5.0, 0, 0, 1, {"controller": 100.0, "gateway": 40.0, "agents": 30.0}),
        sample(35.0, 0, 0, 1, {"controller": 120.0, "gateway": 40.0, "agents": 30.0}),
    ]
    result = {"started": 0.0, "ended": 40.6, "errors": []}
    out = soak.windows(_finals(soak, done), created, result, samples, 20.0)
    assert len(out) == 3 and out[-1].rss_mb == {}

    soak.summarise(out, errors=0, lost=0, rate=1.0, agents=1)

    assert "MISS controller RSS growth < 10%: 100.0 -> 120.0 MB (+20.0%)" in capsys.readouterr().out
