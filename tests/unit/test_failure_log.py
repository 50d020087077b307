"""A loop's failing passes are logged once, then one line a minute, then the recovery."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import OperationalError

from tme.failure_log import FailureLog, describe, span

log = logging.getLogger("tme.test.failures")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failures(clock: Clock) -> FailureLog:
    return FailureLog(log, "test pass", every_s=60.0, clock=clock)


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    """(level, message, with a traceback) of each line logged so far."""
    return [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_the_first_failure_has_its_traceback_and_the_same_one_again_stays_quiet(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    for _ in range(100):  # 50 s of passes twice a second
        failures.failed(refused())
        clock.now += 0.5
    assert lines(caplog) == [(logging.ERROR, "test pass failed", True)]
    assert failures.failed_passes == 100


def test_a_lasting_failure_says_so_once_a_minute(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    for _ in range(480):  # 4 min of passes twice a second
        failures.failed(refused())
        clock.now += 0.5
    notes = [message for level, message, _ in lines(caplog) if level == logging.WARNING]
    error = "ConnectionRefusedError: connection refused"
    assert notes == [
        f"test pass still failing for 60 s (121 passes): {error}",
        f"test pass still failing for 2 min (241 passes): {error}",
        f"test pass still failing for 3 min (361 passes): {error}",
    ]
    assert len(caplog.records) == 4


def test_another_error_is_logged_with_its_traceback_again(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    failures.failed(refused())
    clock.now += 10
    failures.failed(TimeoutError("pool exhausted"))
    clock.now += 1
    failures.failed(refused())  # one seen already in this run of failures
    failures.failed(TimeoutError("pool exhausted"))
    assert lines(caplog) == [
        (logging.ERROR, "test pass failed", True),
        (logging.ERROR, "test pass failed with another error (10 s into the failures)", True),
    ]


def test_an_error_whose_text_changes_every_pass_cannot_flood_the_log(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    for n in range(1000):
        failures.failed(RuntimeError(f"row {n} is locked"))
        clock.now += 0.01
    assert len(caplog.records) <= 10


def test_the_first_success_after_failures_says_it_recovered_and_starts_afresh(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    failures.passed()  # nothing failed: nothing to say
    for _ in range(6):
        failures.failed(refused())
        clock.now += 30
    failures.passed()
    failures.passed()
    assert lines(caplog)[-1] == (
        logging.INFO,
        "test pass recovered after 6 failed passes over 3 min",
        False,
    )
    assert not failures.failing
    caplog.clear()
    failures.failed(refused())  # a new outage is logged in full again
    assert lines(caplog) == [(logging.ERROR, "test pass failed", True)]


def test_a_database_error_is_described_by_the_drivers_error() -> None:
    """The same failure met in different statements reads the same."""
    assert describe(refused()) == "ConnectionRefusedError: connection refused"
    one = OperationalError("SELECT a", {}, OSError("server closed the connection\n\tdetail"))
    two = OperationalError("UPDATE b", {}, OSError("server closed the connection\n\tdetail"))
    assert describe(one) == describe(two) == "OSError: server closed the connection"
    assert describe(RuntimeError()) == "RuntimeError"


def test_spans_read_as_people_say_them() -> None:
    assert [span(s) for s in (0.4, 45, 119, 120, 3599, 7200, 12600)] == [
        "0 s",
        "45 s",
        "119 s",
        "2 min",
        "60 min",
        "2.0 h",
        "3.5 h",
    ]


def test_one_failed_pass_is_one_pass(
    failures: FailureLog, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    failures.failed(refused())
    clock.now += 300
    failures.passed()
    assert caplog.records[-1].getMessage() == "test pass recovered after 1 failed pass over 5 min"


def test_on_change_is_called_when_failing_starts_and_when_it_ends(clock: Clock) -> None:
    """A gateway's heartbeat tells the controller of a journal failing, or back, at once."""
    calls: list[bool] = []  # `failing` as each call saw it
    failures = FailureLog(
        log, "test pass", clock=clock, on_change=lambda: calls.append(failures.failing)
    )
    failures.passed()
    assert calls == []  # nothing had failed
    for _ in range(3):
        failures.failed(refused())
    assert calls == [True]  # once, for the first failure of the run
    failures.passed()
    failures.passed()
    assert calls == [True, False]  # and once for the recovery
