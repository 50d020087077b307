"""Slow runs: a run that succeeded but took far longer than its task's usual (the median
of its last succeeded runs) notifies the rules that name the event `slow`, by webhook
and email, and shows how long it took against the usual in the API."""

from __future__ import annotations

from typing import Any

import pytest
from notify_helpers import add_rule as _add_rule
from notify_helpers import deliveries as _deliveries
from notify_helpers import email_to_ops
from notify_helpers import fail_a_run as _fail_a_run
from pydantic import ValidationError
from sqlmodel import Session
from timed_runs import noop_task, run_taking
from waiting import wait_until

from tme.config import Settings
from tme.controller.services.durations import Usual, is_slow
from tme.controller.services.queries import get_run_detail
from tme.settings_models import SlowRunSettings


def _slow_hook(engine: Any, url: str, **fields: Any) -> None:
    _add_rule(engine, name="slow", channel="webhook", target=url, events=["slow"], **fields)


def test_a_run_far_slower_than_its_usual_notifies_slow(
    app_engine, http_receiver, start_notifier
) -> None:  # type: ignore[no-untyped-def]
    task_id = noop_task(app_engine)
    for _ in range(5):
        run_taking(app_engine, task_id, 2.0)
    _slow_hook(app_engine, http_receiver.url)
    start_notifier(Settings())
    run_taking(app_engine, task_id, 2.5)  # as usual: no notice
    slow_id = run_taking(app_engine, task_id, 10.0)
    assert http_receiver.delivered.wait(10)
    wait_until(lambda: [d.status for d in _deliveries(app_engine)] == ["delivered"], 10)
    assert len(http_receiver.requests) == 1
    body = http_receiver.body(0)
    assert body["event"] == "slow"
    run = body["run"]
    assert (run["run_id"], run["task_id"], run["to_state"]) == (slow_id, task_id, "succeeded")
    assert run["took_s"] == pytest.approx(10.0)
    # the median of the six runs before it: five of 2 s and one of 2.5 s
    assert (run["usual_s"], run["usual_runs"]) == (pytest.approx(2.0), 6)
    assert run["summary"] == (
        "took 10.0 s; usual 2.0 s (median of the last 6 succeeded runs), 5.0x: slow"
    )


def test_a_new_task_is_never_slow_and_a_failure_is_no_slow_run(
    app_engine, http_receiver, start_notifier
) -> None:  # type: ignore[no-untyped-def]
    """Below notifications.slow.min_runs (5) there is no usual to be slow against; a
    failed run that took long is told as the failure (a rule for `failed`), not as slow."""
    task_id = noop_task(app_engine)
    _slow_hook(app_engine, http_receiver.url)
    start_notifier(Settings())
    for _ in range(4):
        run_taking(app_engine, task_id, 1.0)
    run_taking(app_engine, task_id, 30.0)  # the fifth run: four behind it
    run_taking(app_engine, task_id, 30.0, outcome="failed")
    last = run_taking(app_engine, task_id, 30.0)  # five behind it, median 1 s
    assert http_receiver.delivered.wait(10)
    wait_until(lambda: len(_deliveries(app_engine)) == 1, 10)
    assert [http_receiver.body(0)["run"]["run_id"]] == [last]


def test_slow_is_sent_only_to_rules_that_name_it(app_engine, http_receiver, start_notifier) -> None:  # type: ignore[no-untyped-def]
    """A rule with no events hears every event but `slow`: a rule made for failures
    does not start sending durations."""
    task_id = noop_task(app_engine)
    for _ in range(5):
        run_taking(app_engine, task_id, 1.0)
    _add_rule(app_engine, name="all", channel="webhook", target=http_receiver.url, events=[])
    start_notifier(Settings())
    run_taking(app_engine, task_id, 20.0)
    _fail_a_run(app_engine)  # after the slow run: its notice is recorded once this one is
    wait_until(lambda: len(_deliveries(app_engine)) >= 1, 10)
    assert [d.event for d in _deliveries(app_engine)] == ["failed"]


def test_the_settings_email_names_slow_to_get_it(app_engine, smtp_server, start_notifier) -> None:  # type: ignore[no-untyped-def]
    host, port, inbox = smtp_server
    email = {**email_to_ops(host, port), "events": ["slow"]}
    settings = Settings(
        http={"public_url": "https://tme.plant.example"},
        notifications={"email": email, "slow": {"factor": 2, "min_runs": 3, "min_excess_s": 5}},
    )
    task_id = noop_task(app_engine, "close valve 3")
    for _ in range(3):
        run_taking(app_engine, task_id, 4.0)
    start_notifier(settings)
    run_taking(app_engine, task_id, 8.5)  # 2.1x, but only 4.5 s more than usual
    slow_id = run_taking(app_engine, task_id, 12.0)
    assert inbox.arrived.wait(10)
    wait_until(lambda: [d.status for d in _deliveries(app_engine)] == ["delivered"], 10)
    _, message = inbox.messages[0]
    assert message["Subject"] == "[TME] close valve 3 was slow: 12.0 s, usually 4.0 s"
    text = message.get_payload(decode=True).decode()
    assert "usual 4.0 s (median of the last 4 succeeded runs), 3.0x: slow" in text
    assert f"https://tme.plant.example/ui/runs/{slow_id}" in text


def test_a_run_says_how_long_it_took_against_its_usual(app_engine) -> None:  # type: ignore[no-untyped-def]
    task_id = noop_task(app_engine)
    first = run_taking(app_engine, task_id, 3.0)
    for took in (1.0, 2.0, 3.0, 4.0):
        run_taking(app_engine, task_id, took)
    slow = run_taking(app_engine, task_id, 9.5)
    with Session(app_engine) as session:
        alone = get_run_detail(session, first)
        detail = get_run_detail(session, slow)
        loose = get_run_detail(session, slow, SlowRunSettings(factor=4.0))
    assert (alone.took_s, alone.usual_s, alone.usual_runs, alone.slow) == (3.0, None, 0, False)
    assert detail.took_s == pytest.approx(9.5)
    assert (detail.usual_s, detail.usual_runs, detail.slow) == (3.0, 5, True)
    assert loose.slow is False  # 3.2x its usual, where 4x is slow


def test_the_slow_rule() -> None:
    rule = SlowRunSettings()  # 3x the usual, 1 s more at least, 5 runs behind it
    assert is_slow(rule, 7.0, Usual(2.0, 5))
    assert not is_slow(rule, 5.9, Usual(2.0, 5))
    assert not is_slow(rule, 7.0, Usual(2.0, 4))
    assert not is_slow(rule, 0.5, Usual(0.01, 20))  # 50x, but a few ms are no news
    assert not is_slow(rule, 7.0, None)


@pytest.mark.parametrize(
    ("slow", "field"),
    [({"factor": 1}, "factor"), ({"min_runs": 0}, "min_runs"), ({"history": 0}, "history")],
)
def test_slow_settings_are_checked(slow: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(notifications={"slow": slow})
