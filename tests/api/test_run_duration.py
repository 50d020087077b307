"""GET /api/v1/runs/<id> answers how long the run took against its task's usual, and
whether that is slow by this controller's `notifications.slow`."""

from __future__ import annotations

import pytest
from sqlmodel import Session
from timed_runs import noop_task, run_taking

from tme.controller.store.models import Task


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    """Slow here: twice the usual of two runs, by half a second (not the built-in 3x of 5)."""
    from tme.config import Settings

    return Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        notifications={"slow": {"factor": 2, "min_runs": 2, "min_excess_s": 0.5}},
    )


def test_a_run_answers_its_duration_against_its_usual(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    task_id = noop_task(app_engine, "open valve")
    with Session(app_engine) as session:
        first_id = session.get_one(Task, task_id).latest_run_id
    usual = [run_taking(app_engine, task_id, took) for took in (1.0, 1.0)]
    slow = run_taking(app_engine, task_id, 2.5)  # 2.5x, 1.5 s more

    pending = test_client.get(f"/api/v1/runs/{first_id}").json()
    assert (pending["took_s"], pending["usual_s"], pending["slow"]) == (None, None, False)
    first = test_client.get(f"/api/v1/runs/{usual[0]}").json()
    assert (first["took_s"], first["usual_s"], first["usual_runs"]) == (1.0, None, 0)
    answer = test_client.get(f"/api/v1/runs/{slow}").json()
    assert answer["took_s"] == pytest.approx(2.5)
    assert (answer["usual_s"], answer["usual_runs"], answer["slow"]) == (1.0, 2, True)
