"""A batch of agent events is applied with its runs and seen event ids loaded up front:
duplicates inside one batch and across batches count once, several hops of one run
in one batch all land in order, an unknown run is skipped, and presence mixes in."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from tme.controller.event_apply import apply_event, apply_messages
from tme.controller.services import tasks as service
from tme.controller.services.cancel import cancel_run
from tme.controller.store.db import session_scope
from tme.controller.store.models import Agent, Outbox, Run, RunEvent, RunLog, Task, utcnow
from tme.protocol import Event, Presence
from tme.schemas import TaskCreate

AT = {"site": "s1", "agent": "a1"}  # the agent whose events the tests send


def _runs(engine: Engine, count: int) -> list[str]:
    ids = []
    with session_scope(engine) as session:
        for i in range(count):
            data = TaskCreate.model_validate({"name": f"pump {i}", "op": "noop", "target": AT})
            task, _ = service.create_task(session, data)
            assert task.latest_run_id is not None
            ids.append(task.latest_run_id)
    return ids


def _event(run_id: str, kind: str, **fields: object) -> Event:
    return Event(command_id=run_id, type=kind, site="s1", agent="a1", **fields)  # type: ignore[arg-type]


def _hops(engine: Engine, run_id: str) -> list[str]:
    with session_scope(engine) as session:
        query = select(RunEvent.to_state).where(RunEvent.run_id == run_id)
        return list(session.exec(query.order_by(col(RunEvent.id))))


def test_one_batch_applies_every_hop_of_several_runs_once(engine: Engine) -> None:
    first, second = _runs(engine, 2)
    accepted = _event(first, "accepted")
    batch: list[Event | Presence] = [
        accepted,
        _event(second, "accepted"),
        accepted,  # the same event twice in one batch
        _event(first, "started"),
        Presence(site="s1", agent="a1", state="online"),
        _event(first, "succeeded", result={"value": 1200}),
        _event("no-such-run", "started"),
    ]
    with session_scope(engine) as session:
        apply_messages(session, batch)
    assert _hops(engine, first) == ["pending", "accepted", "running", "succeeded"]
    assert _hops(engine, second) == ["pending", "accepted"]
    with session_scope(engine) as session:
        run = session.get(Run, first)
        assert run is not None and run.result == {"value": 1200}
        task = session.get(Task, run.task_id)
        assert task is not None and task.status == "succeeded"  # mirrored on its task
        assert session.exec(select(Agent).where(Agent.name == "a1")).one().online


def test_a_redelivered_batch_changes_nothing(engine: Engine) -> None:
    (run_id,) = _runs(engine, 1)
    batch: list[Event | Presence] = [_event(run_id, "accepted"), _event(run_id, "started")]
    for _ in range(2):
        with session_scope(engine) as session:
            apply_messages(session, batch)
    assert _hops(engine, run_id) == ["pending", "accepted", "running"]


def _statements_applying(engine: Engine, batch: list[Event | Presence]) -> list[str]:
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.lstrip().upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine) as session:
            apply_messages(session, batch)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return statements


def _selects_applying(engine: Engine, run_ids: list[str]) -> int:
    batch: list[Event | Presence] = [_event(run_id, "accepted") for run_id in run_ids]
    return sum(1 for s in _statements_applying(engine, batch) if s.startswith("SELECT"))


def test_a_batch_reads_its_runs_and_tasks_up_front_whatever_its_size(engine: Engine) -> None:
    """Mirroring each hop on its task finds the task already loaded: a batch of 20
    runs reads no more than a batch of 2 (no query, and no autoflush, per event)."""
    small = _selects_applying(engine, _runs(engine, 2))
    large = _selects_applying(engine, _runs(engine, 20))
    assert large == small


def _log_lines(engine: Engine, run_id: str) -> list[str]:
    with session_scope(engine) as session:
        query = select(RunLog.line).where(RunLog.run_id == run_id).order_by(col(RunLog.id))
        return list(session.exec(query))


def test_a_redelivered_log_event_appends_its_lines_once(engine: Engine) -> None:
    (run_id,) = _runs(engine, 1)
    line = _event(run_id, "log", line="flushing\nvalve open")
    finished = _event(run_id, "succeeded", line="done")
    with session_scope(engine) as session:
        apply_messages(session, [line, line, finished])  # twice in one batch
    with session_scope(engine) as session:
        apply_messages(session, [line, finished])  # and again in a later one
    with session_scope(engine) as session:  # one at a time, outside a batch
        assert apply_event(session, line) is False
        assert apply_event(session, finished) is False
    assert _log_lines(engine, run_id) == ["flushing", "valve open", "done"]
    assert _hops(engine, run_id)[-1] == "succeeded"


def test_a_single_event_with_a_line_records_both_line_and_hop(engine: Engine) -> None:
    (run_id,) = _runs(engine, 1)
    with session_scope(engine) as session:
        assert apply_event(session, _event(run_id, "accepted", line="checked the envelope"))
    assert _log_lines(engine, run_id) == ["checked the envelope"]
    assert _hops(engine, run_id) == ["pending", "accepted"]


def _writes_applying(engine: Engine, run_ids: list[str]) -> int:
    batch: list[Event | Presence] = []
    for run_id in run_ids:
        batch += [_event(run_id, "accepted", line="envelope checked"), _event(run_id, "started")]
    statements = _statements_applying(engine, batch)
    return sum(1 for s in statements if s.startswith(("INSERT", "UPDATE")))


def test_a_batch_writes_one_statement_per_table_whatever_its_size(engine: Engine) -> None:
    """Events, log lines, runs and tasks: one executemany each, for 2 runs or 40."""
    assert _writes_applying(engine, _runs(engine, 2)) == 4
    assert _writes_applying(engine, _runs(engine, 40)) == 4


def test_a_batch_mirrors_a_hop_only_on_the_task_whose_latest_run_it_is(engine: Engine) -> None:
    from tme.controller.services.runs import start_run

    first, other = _runs(engine, 2)
    with session_scope(engine) as session:
        run = session.get(Run, first)
        assert run is not None
        task = session.get(Task, run.task_id)
        assert task is not None
        newer = start_run(session, task, reason="again", source="api").id
    batch: list[Event | Presence] = [
        _event(first, "timed_out", reason="no answer"),
        _event(first, "succeeded", result={"value": 7}),  # a result after the timeout
        _event(other, "succeeded", result={"value": 8}),
    ]
    with session_scope(engine) as session:
        apply_messages(session, batch)
    with session_scope(engine) as session:
        old = session.get(Run, first)
        assert old is not None and old.state == "timed_out"
        assert old.result == {"late_result": {"value": 7}}
        task = session.get(Task, old.task_id)
        assert task is not None and task.latest_run_id == newer
        assert task.status == "pending"  # its latest run, not the one that timed out
        done = session.get(Run, other)
        assert done is not None and done.result == {"value": 8}
        assert session.get(Task, done.task_id).status == "succeeded"  # type: ignore[union-attr]
    assert _hops(engine, first)[-2:] == ["timed_out", "succeeded"]


@pytest.mark.parametrize(("site", "agent"), [("s1", "a2"), ("s2", "a1")])
def test_an_event_from_another_agent_or_site_changes_nothing(
    engine: Engine, site: str, agent: str
) -> None:
    """Only the agent a run was sent to answers for it: another one's word, broken or
    forged (a run id is all it takes), is dropped, and the run's own answer still counts."""
    (run_id,) = _runs(engine, 1)
    forged = Event(command_id=run_id, type="succeeded", site=site, agent=agent, result={"x": 1})
    with session_scope(engine) as session:
        assert apply_messages(session, [forged]).moved == [False]
    assert _hops(engine, run_id) == ["pending"]
    with session_scope(engine) as session:
        assert apply_messages(session, [_event(run_id, "accepted")]).moved == [True]
    assert _hops(engine, run_id) == ["pending", "accepted"]


def test_an_answer_with_a_nul_or_a_flood_of_lines_is_stored_bounded(engine: Engine) -> None:
    """A serial instrument may send a NUL, which PostgreSQL refuses in text: it would
    fail the write of the whole batch. 256 KiB of newlines would be 262,144 rows."""
    from tme.controller.services.runs import MAX_LOG_LINES

    (run_id,) = _runs(engine, 1)
    flood = _event(run_id, "log", line="\n".join(f"line {i}" for i in range(5000)))
    failed = _event(run_id, "failed", reason="bad reply \x00\x07", line="got \x00 back")
    with session_scope(engine) as session:
        apply_messages(session, [flood, failed])
    with session_scope(engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == "failed"
        assert run.reason == "bad reply \ufffd\x07"
        lines = list(session.exec(select(RunLog.line).where(RunLog.run_id == run_id)))
    assert len(lines) == MAX_LOG_LINES + 1
    assert lines[MAX_LOG_LINES - 1] == f"... {5000 - MAX_LOG_LINES + 1} more lines not kept"
    assert lines[-1] == "got \ufffd back"


def test_the_answer_to_a_stop_request_is_no_warning_of_an_unknown_run(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """An agent answers a stop request (the cancel command of a running run) as it answers
    any command: delivered, then succeeded. Those answers were logged as warnings of an
    unknown run dropped, two for every cancel, as if something had gone wrong; an event
    of a command nobody sent still is."""
    (run_id,) = _runs(engine, 1)
    with session_scope(engine) as session:
        apply_messages(session, [_event(run_id, "accepted"), _event(run_id, "started")])
    with session_scope(engine) as session:
        # its command went out (the dispatcher's row): a stop follows it to the agent
        session.add(Outbox(run_id=run_id, site="s1", body="{}", published_at=utcnow()))
    with session_scope(engine) as session:
        cancel_run(session, run_id)
        stop = session.exec(select(Outbox).where(Outbox.run_id != run_id)).one()
    with caplog.at_level(logging.DEBUG, logger="tme.events"), session_scope(engine) as session:
        answers = [_event(stop.run_id, "delivered"), _event(stop.run_id, "succeeded")]
        apply_messages(session, [*answers, _event("no-such-run", "started")])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == ["event started for unknown run no-such-run dropped"]
    said = [r.getMessage() for r in caplog.records if stop.run_id in r.getMessage()]
    assert said and all(
        line.endswith(f"stop request {stop.run_id} for run {run_id}") for line in said
    )


def test_a_progress_result_is_the_runs_result_until_its_final_one(engine: Engine) -> None:
    """A stop's first writes (its agent's progress event) are read from the run while it
    goes on; its final result replaces them, and a progress arriving after that does not."""
    (run_id,) = _runs(engine, 1)
    first = {"first_pass": {"written": {"run": False}, "not_written": {}, "hold_s": 29.9}}

    def result() -> object:
        with session_scope(engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            return run.state, run.result

    with session_scope(engine) as session:
        apply_messages(
            session, [_event(run_id, "started"), _event(run_id, "progress", result=first)]
        )
    assert result() == ("running", first)
    done = {"stopped": "pump1", "written": {"run": False}, **first}
    with session_scope(engine) as session:
        apply_messages(session, [_event(run_id, "succeeded", result=done)])
    with session_scope(engine) as session:
        apply_messages(session, [_event(run_id, "progress", result={"first_pass": {}})])
    assert result() == ("succeeded", done)


def test_a_stops_first_writes_are_said_in_its_log_once(engine: Engine) -> None:
    """The progress event that says a stop's first writes adds them to the run's log in
    the same transaction (what a watching page reads as it comes), once however often it
    is delivered, and not to a run already final."""
    running, ended = _runs(engine, 2)
    first = {
        "first_pass": {
            "at": "2026-12-07T06:00:01.052000+00:00",
            "written": {"run": False, "speed_setpoint": 0},
            "not_written": {},
            "hold_s": 2.0,
        }
    }
    progress = _event(running, "progress", result=first)
    with session_scope(engine) as session:
        apply_messages(session, [_event(running, "started"), progress, progress])
    with session_scope(engine) as session:
        apply_messages(session, [progress])  # redelivered later
    assert _log_lines(engine, running) == [
        "safe values written at 06:00:01.052 UTC: run = false, speed_setpoint = 0",
        "holding them 2.0 s, until 06:00:03.052 UTC: a write the stop cut off may land until"
        " then; its agent writes them again then",
    ]
    failed = {"first_pass": {**first["first_pass"], "not_written": {"run": "no answer"}}}
    with session_scope(engine) as session:
        apply_messages(
            session,
            [_event(ended, "failed"), _event(ended, "progress", result=failed)],
        )
    assert _log_lines(engine, ended) == []
