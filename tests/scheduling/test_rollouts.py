"""Rollouts: one device op on many matching devices, `window` runs at once, the next
started as each settles (device name order), aborted once too many did not succeed,
canceled as a whole; all of it decided from the database, in the settle's transaction."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from rollout_fleet import plant, publish, speed
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from tme.config import Settings
from tme.controller.run_ready import RunReady
from tme.controller.services import rollout_match
from tme.controller.services.rollout_match import preview
from tme.controller.services.rollout_reads import to_public
from tme.controller.services.rollouts import cancel_rollout, create_rollout
from tme.controller.services.runs import transition
from tme.controller.store.db import make_engine, session_scope
from tme.controller.store.models import Outbox, Run, Task
from tme.controller.store.rollout_models import Rollout
from tme.controller.workflow import settle_missed, settle_pending
from tme.errors import Conflict, ValidationError
from tme.rollout_schemas import RolloutCreate, RolloutPublic
from tme.states import RunState


@pytest.fixture
def hook() -> RunReady:
    return RunReady(Settings(), threading.Event())


@pytest.fixture
def fleet(engine: Engine) -> None:
    plant(engine)


def _create(engine: Engine, hook: RunReady | None, **fields: Any) -> int:
    with session_scope(engine) as session:
        rollout = create_rollout(session, RolloutCreate(**speed(**fields)), "ana", hook)
        return rollout.id or 0


def _show(engine: Engine, rollout_id: int) -> RolloutPublic:
    with Session(engine) as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        return to_public(session, rollout)


def _states(engine: Engine, rollout_id: int) -> dict[str, str]:
    return {d.device: d.state for d in _show(engine, rollout_id).devices}


def _end(engine: Engine, hook: RunReady | None, rollout_id: int, device: str, state: str) -> None:
    """The device's run ends in `state`, then the workflow engine settles it."""
    run_id = next(d.run_id for d in _show(engine, rollout_id).devices if d.device == device)
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        transition(session, run, RunState(state), reason=f"ended {state}")
    with session_scope(engine) as session:
        settle_pending(session, hook)


# --- matching and preview -------------------------------------------------------------


def _preview(engine: Engine, **fields: Any) -> Any:
    with Session(engine) as session:
        return preview(session, RolloutCreate(**speed(**fields)))


def test_match_narrows_by_agent_profile_and_patterns_in_device_name_order(
    engine: Engine, fleet: None
) -> None:
    names = lambda plan: [(d.agent, d.device) for d in plan.devices]  # noqa: E731
    assert names(_preview(engine)) == [
        ("skid-a", "pump1"),
        ("skid-a", "pump2"),
        ("skid-b", "pump3"),
        ("skid-b", "pump4"),
    ]
    by_agent = {"site": "plant-1", "agent": "skid-b"}
    assert names(_preview(engine, match=by_agent)) == [("skid-b", "pump3"), ("skid-b", "pump4")]
    picked = {"site": "plant-1", "devices": ["pump[13]", "pump4"]}
    assert names(_preview(engine, match=picked)) == [
        ("skid-a", "pump1"),
        ("skid-b", "pump3"),
        ("skid-b", "pump4"),
    ]


def test_a_match_of_no_device_or_a_name_matching_none_is_refused(
    engine: Engine, fleet: None
) -> None:
    with pytest.raises(ValidationError) as empty:
        _preview(engine, match={"site": "plant-1", "profile": "conveyor"})
    assert empty.value.message == (
        "invalid request: match: no device at site 'plant-1' with profile 'conveyor' (as"
        " their agents published them) matches: a rollout needs at least one"
    )
    with pytest.raises(ValidationError) as typo:
        _preview(engine, match={"site": "plant-1", "devices": ["pump1", "pumpp2"]})
    assert typo.value.field_errors[0]["field"] == "match.devices.1"
    assert "'pumpp2' matches no device at site 'plant-1'" in typo.value.message
    assert "did you mean 'pump2'" in typo.value.message
    with pytest.raises(ValidationError, match="no device at site 'plant-9'"):
        _preview(engine, match={"site": "plant-9"})


def test_a_match_of_more_devices_than_a_rollout_takes_is_refused(
    engine: Engine, fleet: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rollout_match, "MAX_DEVICES", 3)
    with pytest.raises(ValidationError) as many:
        _preview(engine)
    assert "4 devices at site 'plant-1' with profile 'pump'" in many.value.message
    assert "a rollout runs on at most 3; narrow the match" in many.value.message
    assert [
        d.device for d in _preview(engine, match={"site": "plant-1", "agent": "skid-b"}).devices
    ] == [
        "pump3",
        "pump4",
    ]


def test_preview_says_what_the_fleet_checks_say_of_each_device_and_stores_nothing(
    engine: Engine,
) -> None:
    lockout = {"lockout": {"by": "bo", "reason": "seal change", "at": "2026-12-07T08:00:00Z"}}
    publish(engine, "plant-1", "skid-a", {"pump1": "pump", "pump2": "pump"}, pump2=lockout)
    publish(engine, "plant-1", "old", {"pump9": "tank"})  # a "pump" with a tank's points
    plan = _preview(engine, match={"site": "plant-1", "devices": ["pump*"]})
    assert [d.device for d in plan.devices] == ["pump1", "pump2"]
    assert plan.devices[0].warnings == []
    assert "is locked out at its agent by bo" in plan.devices[1].warnings[0]
    assert [d.device for d in plan.refused] == ["pump9"]
    assert "has no point 'speed_setpoint'" in (plan.refused[0].refused or "")
    assert plan.window == 1
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Task)).one() == 0
        assert session.exec(select(func.count()).select_from(Rollout)).one() == 0


def test_refused_devices_refuse_the_rollout_unless_skipped(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    publish(engine, "plant-1", "old", {"pump9": "tank"})
    everything = {"site": "plant-1", "devices": ["pump*"]}
    with pytest.raises(ValidationError) as refused:
        _create(engine, hook, match=everything)
    assert refused.value.message.startswith(
        "invalid request: match: 1 matched device is refused (pass skip_refused (tme rollout"
        " create --skip-refused) to leave them out): pump9 (old): params.point: device"
        " 'pump9' of agent 'old' at site"
        " 'plant-1' has no point 'speed_setpoint'"
    )
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Task)).one() == 0
    rollout_id = _create(engine, hook, match=everything, skip_refused=True)
    shown = _show(engine, rollout_id)
    assert [d.device for d in shown.devices] == ["pump1", "pump2", "pump3", "pump4"]
    assert [d.device for d in shown.refused] == ["pump9"]
    with pytest.raises(ValidationError, match="every matched device is refused"):
        _create(engine, hook, match={"site": "plant-1", "agent": "old"}, skip_refused=True)


# --- waves ----------------------------------------------------------------------------


def test_a_window_of_runs_starts_and_the_next_starts_as_each_settles(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook, window=2, timeout_s=20, retries={"max": 0}, priority=8)
    shown = _show(engine, rollout_id)
    assert shown.state == "going" and shown.window == 2
    assert _states(engine, rollout_id) == {
        "pump1": "queued",
        "pump2": "queued",
        "pump3": "not_started",
        "pump4": "not_started",
    }
    with Session(engine) as session:
        task = session.get(Task, shown.devices[0].task_id)
        assert task is not None
        assert (task.name, task.op, task.agent, task.device, task.timeout_s, task.priority) == (
            "pump speed: pump1",
            "modbus.write",
            "skid-a",
            "pump1",
            20,
            8,
        )
        assert task.params == {"point": "speed_setpoint", "value": 1200, "verify": False}
        outbox = session.exec(select(func.count()).select_from(Outbox)).one()
        assert outbox == 2  # each start went to the outbox, as any start does
    _end(engine, hook, rollout_id, "pump2", "succeeded")
    assert _states(engine, rollout_id)["pump3"] == "queued"
    assert _states(engine, rollout_id)["pump4"] == "not_started"
    _end(engine, hook, rollout_id, "pump1", "succeeded")
    _end(engine, hook, rollout_id, "pump3", "succeeded")
    assert _show(engine, rollout_id).state == "going"
    _end(engine, hook, rollout_id, "pump4", "succeeded")
    done = _show(engine, rollout_id)
    assert (done.state, done.counts) == ("succeeded", {"succeeded": 4})
    assert done.finished_at is not None


def test_a_percentage_window_is_a_share_of_the_devices_rounded_up(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook, window="25%")
    assert _show(engine, rollout_id).window == 1
    rollout_id = _create(engine, hook, window="30%")
    shown = _show(engine, rollout_id)
    assert (shown.window, shown.window_given) == (2, "30%")
    assert shown.counts == {"not_started": 2, "queued": 2}


def test_all_settled_with_failures_below_the_threshold_is_done(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook, window=4, abort={"failed_percent": 50, "min_settled": 4})
    for device, state in [("pump1", "succeeded"), ("pump2", "failed")]:
        _end(engine, hook, rollout_id, device, state)
    for device in ("pump3", "pump4"):
        _end(engine, hook, rollout_id, device, "succeeded")
    shown = _show(engine, rollout_id)
    assert (shown.state, shown.counts) == ("done", {"failed": 1, "succeeded": 3})


def test_a_failed_run_being_retried_counts_once_its_retry_settles(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    retried = {"max": 1, "backoff_s": 0, "jitter": 0, "repeatable": True}
    rollout_id = _create(
        engine, hook, retries=retried, abort={"failed_percent": 1, "min_settled": 1}
    )
    _end(engine, hook, rollout_id, "pump1", "failed")
    shown = _show(engine, rollout_id)
    assert shown.state == "going"
    assert shown.devices[0].state == "waiting"  # its retry, planned
    assert shown.devices[1].state == "not_started"
    _end(engine, hook, rollout_id, "pump1", "failed")  # the retry fails too
    shown = _show(engine, rollout_id)
    why = "rollout aborted: 1 of 1 settled runs did not succeed (100% >= 1%)"
    assert (shown.state, shown.reason) == ("aborted", why)


# --- abort and cancel -----------------------------------------------------------------


def test_too_many_failures_abort_and_the_runs_going_finish(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook, window=3, abort={"failed_percent": 20, "min_settled": 2})
    _end(engine, hook, rollout_id, "pump1", "failed")
    # one settled: fewer than min_settled, so pump4 starts in pump1's place
    assert _states(engine, rollout_id)["pump4"] == "queued"
    assert _show(engine, rollout_id).state == "going"
    rollout_id = _create(engine, hook, window=2, abort={"failed_percent": 60, "min_settled": 2})
    _end(engine, hook, rollout_id, "pump1", "timed_out")
    _end(engine, hook, rollout_id, "pump2", "succeeded")  # 1 of 2: 50% < 60%
    assert _show(engine, rollout_id).state == "going"
    assert _states(engine, rollout_id)["pump4"] == "queued"

    rollout_id = _create(engine, hook, window=2, abort={"failed_percent": 50, "min_settled": 2})
    _end(engine, hook, rollout_id, "pump1", "rejected")  # pump3 starts in its place
    _end(engine, hook, rollout_id, "pump2", "succeeded")
    shown = _show(engine, rollout_id)
    why = "rollout aborted: 1 of 2 settled runs did not succeed (50% >= 50%)"
    assert (shown.state, shown.reason) == ("aborted", why)
    states = {d.device: (d.state, d.reason) for d in shown.devices}
    assert states["pump3"][0] == "queued"  # already going: it finishes
    assert states["pump4"] == ("skipped", why)
    _end(engine, hook, rollout_id, "pump3", "succeeded")
    assert _show(engine, rollout_id).state == "aborted"


def test_cancel_skips_the_devices_not_started_and_cancels_the_runs_going(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook, window=2)
    _end(engine, hook, rollout_id, "pump1", "succeeded")
    with session_scope(engine) as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        cancel_rollout(session, rollout, "bo")
    with session_scope(engine) as session:
        settle_pending(session, hook)  # the canceled runs settle: nothing more starts
    shown = _show(engine, rollout_id)
    why = f"rollout {rollout_id} canceled by bo"
    assert (shown.state, shown.reason) == ("canceled", why)
    states = {d.device: (d.state, d.reason) for d in shown.devices}
    assert states["pump1"] == ("succeeded", "ended succeeded")
    assert states["pump2"] == ("canceled", f"{why}: canceled before dispatch")
    assert states["pump3"] == ("canceled", f"{why}: canceled before dispatch")
    assert states["pump4"] == ("skipped", why)
    with session_scope(engine) as session:
        rollout = session.get(Rollout, rollout_id)
        assert rollout is not None
        with pytest.raises(Conflict, match=f"rollout {rollout_id} already ended \\(canceled\\)"):
            cancel_rollout(session, rollout, "bo")


# --- restart safety -------------------------------------------------------------------


def _starts(engine: Engine, rollout_id: int) -> int:
    """Runs of the rollout's tasks ever made (a start made twice would make two)."""
    with Session(engine) as session:
        task_ids = [d.task_id for d in _show(engine, rollout_id).devices]
        return int(
            session.exec(
                select(func.count()).select_from(Run).where(col(Run.task_id).in_(task_ids))
            ).one()
        )


def test_a_restarted_controller_starts_the_next_run_once_from_the_database(
    engine: Engine, fleet: None, hook: RunReady
) -> None:
    rollout_id = _create(engine, hook)
    url = engine.url
    with session_scope(engine) as session:
        run = session.get(Run, _show(engine, rollout_id).devices[0].run_id)
        assert run is not None
        transition(session, run, RunState.succeeded, reason="done")
    engine.dispose()  # the controller stops after the run ended, before settling it
    again = make_engine(str(url))
    fresh = RunReady(Settings(), threading.Event())  # nothing kept in memory
    try:
        with session_scope(again) as session:
            assert settle_pending(session, fresh) == 1
        with session_scope(again) as session:  # settling again, and the sweep: nothing
            assert settle_pending(session, fresh) == 0
            assert settle_missed(session, fresh) == 0
        assert _states(again, rollout_id)["pump2"] == "queued"
        assert _starts(again, rollout_id) == 2
    finally:
        again.dispose()
