"""Text stored before the API refused bidirectional and invisible characters, or sent by
an agent (a run's reason, log lines, a result, device and point names), shows on every
page as its escapes: a right-to-left override in "pump 2 stop" showed as other words."""

from __future__ import annotations

import json
from typing import Any

import pytest
from nicegui.testing import User
from sqlmodel import Session
from test_live_pages import TARGET, _latest_run, _task
from waiting import wait_until_async

from tme.controller.services import runs as run_service
from tme.controller.store.models import Agent, Device, Run, Task, utcnow
from tme.controller.store.security_models import AuditEntry

RLO = "\u202e"  # right-to-left override: what follows it shows reversed
NAME = f"pump 2 {RLO}pots"  # shows as "pump 2 stop"
SHOWN = "pump 2 \\u202epots"


def _stored(board: Any) -> tuple[int, str]:
    """A task whose name, run reasons, log line, result and device hold the override,
    as a database from before the rule, or an agent, can hold them."""
    task_id = _task(board, op="external", target=None, params={})  # its result as sent
    run_id = _latest_run(board, task_id)
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        run = session.get(Run, run_id)
        assert task is not None and run is not None
        task.name = NAME
        session.add(task)
        for state in ("queued", "dispatched", "running"):
            run_service.transition(session, run, state, reason=f"{state}: {NAME}", source="agent")
        run_service.append_log(session, run, f"log: {NAME}")
        result = {"note": f"result: {NAME}"}
        run_service.transition(
            session, run, "failed", reason=f"failed: {NAME}", source="agent", result=result
        )
        points = [{"name": f"level {RLO}", "type": "float32", "unit": f"% {RLO}", "access": "r"}]
        session.add(Device(site=TARGET["site"], agent=TARGET["agent"], name=f"tank{RLO}1",
                           points=points))  # fmt: skip
        session.add(Agent(site=TARGET["site"], name=f"skid{RLO}b", online=True, last_seen=utcnow()))
        # a row written before the audit log escaped what it keeps
        session.add(AuditEntry(actor=f"ann{RLO}", action="task.create", target=NAME, hash="0"))
        session.commit()
    return task_id, run_id


def _sent(user: User) -> list[str]:
    """What each element of the page sends to the browser (its text, its props: a
    table's rows, a timeline entry's body), as JSON that keeps every character."""
    return [
        json.dumps(element._to_dict(), ensure_ascii=False)
        for element in user.client.elements.values()
    ]


async def _shows(user: User, text: str) -> None:
    """Wait (with a deadline) for an element to send `text` (a page reads off the loop)."""
    needle = json.dumps(text)[1:-1]
    await wait_until_async(
        lambda: any(needle in sent for sent in _sent(user)),
        timeout=5,
        what=f"the page to show {text!r}",
    )


@pytest.mark.parametrize(
    ("page", "seen"),
    [
        ("/tasks", [SHOWN]),
        ("/tasks/{task}", [SHOWN, "failed: " + SHOWN]),
        ("/runs/{run}", [SHOWN, "failed: " + SHOWN, "log: " + SHOWN, "result: " + SHOWN]),
        ("/", [SHOWN, "failed: " + SHOWN]),
        ("/fleet", ["tank\\u202e1", "skid\\u202eb", "level \\u202e", "% \\u202e"]),
        ("/reports?group_by=task", ["failed: " + SHOWN]),
        ("/audit", ["ann\\u202e"]),
    ],
)
async def test_stored_and_agent_text_shows_the_override_as_its_escape(
    user: User, board, sign_in, page: str, seen: list[str]
) -> None:
    task_id, run_id = _stored(board)
    sign_in(user, "admin")
    await user.open(page.format(task=task_id, run=run_id))
    for text in seen:
        await _shows(user, text)
    assert [sent for sent in _sent(user) if RLO in sent] == []


async def test_what_arrives_while_the_run_page_is_open_shows_as_its_escapes(
    user: User, board, sign_in
) -> None:
    run_id = _latest_run(board, _task(board, op="external", target=None, params={}))
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("pending")
    with Session(board.engine) as session:  # an agent's log line, then its reason
        run = session.get(Run, run_id)
        assert run is not None
        run_service.append_log(session, run, f"log: {NAME}")
        run_service.transition(session, run, "running", reason=f"running: {NAME}", source="agent")
        session.commit()
    await _shows(user, "log: " + SHOWN)
    await user.should_see(marker="run-reason", content="running: " + SHOWN, retries=15)
    assert [sent for sent in _sent(user) if RLO in sent] == []
