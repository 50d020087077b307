"""Workflow graph, device values, live log lines and run control under NiceGUI's simulated user."""

from __future__ import annotations

from typing import Any

from nicegui import ui
from nicegui.testing import User
from sqlmodel import Session, col, select

from tme.controller.event_apply import apply_messages
from tme.controller.services import runs as run_service
from tme.controller.services.launch import launch_run
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Device, Run, Task
from tme.controller.store.workflow_models import RunLink
from tme.controller.workflow import settle_pending
from tme.protocol import Event
from tme.schemas import TaskCreate

# should_see retries every 0.1 s: a change must show within 1.5 s (the goal is one
# second; the margin is for a loaded test machine).
LIVE = 15
TARGET = {"site": "plant-x", "agent": "skid-a", "device": "tank1"}


def _task(board: Any, **fields: Any) -> int:
    body = TaskCreate.model_validate(
        {
            "name": "read tank level",
            "op": "modbus.read",
            "target": TARGET,
            "params": {"point": "level"},
            **fields,
        }
    )
    with Session(board.engine) as session:
        task, _ = create_task(session, body)
        session.commit()
        return task.id or 0


def _latest_run(board: Any, task_id: int) -> str:
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None and task.latest_run_id
        return task.latest_run_id


def _move(board: Any, run_id: str, *states: str, result: dict | None = None) -> None:
    with Session(board.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        for state in states:
            final = result if state == states[-1] else None
            run_service.transition(session, run, state, reason=state, source="agent", result=final)
        session.commit()


def _succeed(board: Any, run_id: str, result: dict | None = None) -> None:
    _move(board, run_id, "queued", "dispatched", "running", "succeeded", result=result)


def _new_run(board: Any, task_id: int) -> str:
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        run = launch_run(session, task, cause="manual", reason="again", hook=None)
        session.commit()
        return run.id


def _graph(user: User) -> str:
    diagram = user.find(marker="workflow-graph").elements.pop()
    assert isinstance(diagram, ui.mermaid)
    return diagram.content


# --- workflow run ----------------------------------------------------------------


async def test_workflow_graph_colours_steps_and_follows_them_live(
    user: User, board, sign_in
) -> None:
    first = _task(board, name="fill")
    second = _task(board, name="mix", depends_on=[{"task": first, "on": "success"}])
    root = _latest_run(board, first)
    sign_in(user, "viewer")
    await user.open(f"/workflows/{root}")
    await user.should_see("Workflow run")
    graph = _graph(user)
    assert f't{first}["fill<br/>pending"]:::pending' in graph
    assert f"t{first} -->|success| t{second}" in graph
    assert "classDef pending fill:" in graph

    _succeed(board, root)
    with Session(board.engine) as session:  # the workflow engine starts the next step
        settle_pending(session, None)
        session.commit()
    await user.should_see(  # live: as long as the next step's wait below
        marker="workflow-graph",
        content=f't{first}["fill<br/>succeeded"]:::succeeded',
        retries=LIVE,
    )
    step = f't{second}["mix<br/>pending"]:::pending'
    await user.should_see(marker="workflow-graph", content=step, retries=LIVE)
    await user.should_see("run ")  # the new step's run is linked under the graph


async def test_run_and_task_pages_link_to_the_workflow_run(user: User, board, sign_in) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("workflow")
    await user.open(f"/runs/{run_id}")
    user.find("workflow run").click()
    await user.should_see(f"Workflow run {run_id[:8]}")
    assert f't{task_id}["read tank level<br/>pending"]' in _graph(user)


async def test_a_steps_run_id_is_no_workflow_run_and_links_to_its_own(
    user: User, board, sign_in
) -> None:
    """/workflows/<a step's run id> drew that step alone as if it were a workflow run of
    its own; it is none: the page says so and links to the workflow run it is in."""
    first = _task(board, name="fill")
    second = _task(board, name="mix", depends_on=[{"task": first, "on": "success"}])
    root = _latest_run(board, first)
    _succeed(board, root)
    with Session(board.engine) as session:
        settle_pending(session, None)
        session.commit()
    step = _latest_run(board, second)
    sign_in(user, "viewer")
    await user.open(f"/workflows/{step}")
    await user.should_see(f"There is no workflow run {step}.")
    await user.should_not_see(marker="workflow-graph")
    user.find(marker="its-workflow-run").click()
    await user.should_see(f"Workflow run {root[:8]}")


async def test_a_workflow_run_on_another_site_is_not_shown(user: User, board, sign_in) -> None:
    run_id = _latest_run(board, _task(board))
    sign_in(user, "viewer", sites="elsewhere")
    await user.open(f"/workflows/{run_id}")
    await user.should_see(f"There is no workflow run {run_id}.")


# --- device values ---------------------------------------------------------------


def _device(board: Any) -> None:
    points = [
        {"name": "level", "kind": "point", "type": "float32", "unit": "%", "access": "r"},
        {"name": "inflow", "kind": "point", "type": "uint16", "unit": "l/min", "access": "r"},
    ]
    with Session(board.engine) as session:
        session.add(Device(site="plant-x", agent="skid-a", name="tank1", points=points))
        session.commit()


def _read_result(level: float) -> dict:
    return {"values": {"level": {"value": level, "unit": "%"}}}


async def test_fleet_shows_latest_point_values_and_refreshes_live(
    user: User, board, sign_in
) -> None:
    _device(board)
    task_id = _task(board)
    _succeed(board, _latest_run(board, task_id), _read_result(41.25))
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("41.25")
    value = user.find(content="41.25").elements.pop()
    assert "point-value" in value.classes
    later = _new_run(board, task_id)
    _succeed(board, later, _read_result(57.5))
    await user.should_see("57.5", retries=LIVE)  # no reload: the run's success refreshed it
    await user.should_see(later[:8])  # and it names the run the value came from


# --- live log lines ----------------------------------------------------------------


async def test_run_page_shows_log_lines_as_they_arrive(user: User, board, sign_in) -> None:
    run_id = _latest_run(board, _task(board))
    _move(board, run_id, "queued", "dispatched", "running")
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("running")
    with Session(board.engine) as session:  # a log event: no state change comes with it
        run = session.get(Run, run_id)
        assert run is not None
        run_service.append_log(session, run, "reading level from tank1")
        session.commit()
    await user.should_see("reading level from tank1", retries=LIVE)


FIRST_PASS = {
    "at": "2026-12-07T06:00:01.052000+00:00",
    "written": {"run": False},
    "not_written": {},
    "hold_s": 30.0,
}


async def test_run_page_says_a_stops_first_writes_as_they_come(user: User, board, sign_in) -> None:
    """A stop holding its safe values for a patient device goes on for its hold: its page
    says at once that they were written (the agent's progress event, applied as the
    event consumer applies it), where it said "no result yet" until the run ended."""
    run_id = _latest_run(board, _task(board))
    _move(board, run_id, "queued", "dispatched", "running")
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("no result yet")
    progress = Event(
        command_id=run_id,
        type="progress",
        site=TARGET["site"],
        agent=TARGET["agent"],
        result={"first_pass": FIRST_PASS},
    )
    with Session(board.engine) as session:
        apply_messages(session, [progress])
        session.commit()
    written = "safe values written at 06:00:01.052 UTC: run = false"
    await user.should_see(marker="run-first-pass", content=written, retries=LIVE)
    await user.should_see(marker="run-first-pass", content="holding them 30.0 s, until 06:00:31")
    await user.should_not_see("no result yet")
    await user.should_not_see("first_pass")  # said in words, not as its mapping
    _move(board, run_id, "succeeded", result={"stopped": "tank1", "first_pass": FIRST_PASS})
    await user.should_see("succeeded", retries=LIVE)
    await user.should_see(marker="run-first-pass", content=written)
    await user.should_not_see(marker="run-first-pass", content="holding them")  # over


async def test_run_page_says_a_safe_value_not_written(user: User, board, sign_in) -> None:
    failed = {**FIRST_PASS, "not_written": {"run": "no answer within 1.0 s"}}
    run_id = _latest_run(board, _task(board))
    _move(board, run_id, "queued", "dispatched", "running", "failed", result={"first_pass": failed})
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see(
        marker="run-first-pass",
        content="SAFE VALUES NOT WRITTEN at 06:00:01.052 UTC: run: no answer within 1.0 s",
    )


# --- run control through the controller's services ---------------------------------


async def test_run_now_follows_the_overlap_policy(user: User, board, sign_in) -> None:
    task_id = _task(board)  # its first run is still pending
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("Run now").click()
    await user.should_see("overlap")  # the start was refused as the API would refuse it
    with Session(board.engine) as session:
        states = session.exec(select(Run.state).where(Run.task_id == task_id)).all()
    assert sorted(states) == ["pending", "skipped"]  # and recorded, as the API records it


async def test_cancel_of_a_dispatched_run_asks_the_agent_to_stop(
    user: User, board, sign_in
) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    _move(board, run_id, "queued", "dispatched")
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("Cancel").click()
    await user.should_see("asked the agent to stop")
    with Session(board.engine) as session:
        run = session.get(Run, run_id)
        link = session.get(RunLink, run_id)
        assert run is not None and run.state == "dispatched"  # the agent reports canceled
        assert link is not None and link.cancel_requested_at is not None


async def test_retry_on_the_run_page_starts_the_step_again(user: User, board, sign_in) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    _move(board, run_id, "queued", "dispatched", "running", "failed")
    sign_in(user, "operator")
    await user.open(f"/runs/{run_id}")
    user.find("Retry").click()
    with Session(board.engine) as session:
        retry = session.exec(
            select(Run).where(Run.task_id == task_id).order_by(col(Run.attempt).desc())
        ).first()
        assert retry is not None and retry.id != run_id and retry.attempt == 2
        link = session.get(RunLink, retry.id)
        assert link is not None and (link.cause, link.workflow_id) == ("retry", run_id)
    await user.should_see(f"Run {retry.id[:8]}")


async def test_retry_on_the_run_page_follows_the_overlap_policy(user: User, board, sign_in) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    _move(board, run_id, "queued", "dispatched", "running", "failed")
    busy = _new_run(board, task_id)  # another run of the task is still going
    sign_in(user, "operator")
    await user.open(f"/runs/{run_id}")
    user.find("Retry").click()
    await user.should_see("overlap skip")
    # refused as the API refuses it, and said so where the viewer is (no new run to open)
    assert user.notify.contains(f"run {busy} is still pending (overlap skip)")
    with Session(board.engine) as session:
        runs = session.exec(select(Run).where(Run.task_id == task_id)).all()
    assert sorted(r.state for r in runs) == ["failed", "pending", "skipped"]
    skipped = next(r for r in runs if r.state == "skipped")
    assert skipped.reason.endswith(f"run {busy} is still pending (overlap skip)")


async def test_a_viewer_gets_no_run_controls(user: User, board, sign_in) -> None:
    run_id = _latest_run(board, _task(board))
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("Timeline")
    for label in ("Cancel run", "Retry"):
        await user.should_not_see(label)


# --- late hops ---------------------------------------------------------------------


def _late_dispatch(board: Any, run_id: str) -> None:
    """The dispatcher's confirm, recorded after the run finished (as a late hop)."""
    from tme.controller.services.hop_batch import HopBatch
    from tme.controller.services.runs import Hop
    from tme.states import RunState

    with Session(board.engine) as session:
        batch = HopBatch(session, [run_id])
        assert not batch.record(run_id, Hop(RunState.dispatched, "confirmed by broker"))
        batch.write()
        session.commit()


async def test_a_late_hop_shows_in_the_timeline_and_leaves_the_state(
    user: User, board, sign_in
) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    _move(board, run_id, "queued", "delivered", "running", "succeeded")
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("succeeded")
    _late_dispatch(board, run_id)
    await user.should_see(marker="late-hop", retries=LIVE)
    chips = [e.text for e in user.find(marker="run-state").elements]
    assert chips == ["succeeded"]

    await user.open(f"/tasks/{task_id}")
    await user.should_see("succeeded")
    _late_dispatch(board, run_id)  # another one, while the task page follows the runs
    later = _new_run(board, task_id)
    await user.should_see(later[:8], retries=LIVE)  # the changes up to here were taken
    await user.should_not_see("dispatched")


async def test_the_task_status_follows_its_latest_run_only(user: User, board, sign_in) -> None:
    task_id = _task(board, overlap={"policy": "allow", "max": 2})  # two at once
    older = _latest_run(board, task_id)
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    later = _new_run(board, task_id)
    await user.should_see(later[:8], retries=LIVE)
    _succeed(board, later)
    await user.should_see(marker="task-status", content="succeeded", retries=LIVE)
    _move(board, older, "queued", "dispatched")  # the older run is still on its way
    await user.should_see("dispatched", retries=LIVE)  # its row took the change
    assert [e.text for e in user.find(marker="task-status").elements] == ["succeeded"]
