"""A user granted some sites sees only those sites' data on every dashboard page,
as the API answers them: counts, rows and links of another site never show, and
another site's task, run or workflow page is not found (the API's 404)."""

from __future__ import annotations

from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlmodel import Session

from tme.controller.event_apply import apply_presence
from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, Task
from tme.protocol import Presence
from tme.schemas import TaskCreate
from tme.ui.pages.tasks import PAGE_SIZE

SITE_A = "site-a"
SITE_B = "site-b"
# should_see retries every 0.1 s: a change must show within 1.5 s.
LIVE = 15


def _task(board: Any, site: str, name: str) -> tuple[int, str]:
    body = TaskCreate.model_validate(
        {
            "name": name,
            "op": "modbus.read",
            "target": {"site": site, "agent": f"skid-{site}", "device": "tank1"},
            "params": {"point": "level"},
        }
    )
    with Session(board.engine) as session:
        task, _ = create_task(session, body)
        session.commit()
        assert task.latest_run_id
        return task.id or 0, task.latest_run_id


def _move(board: Any, run_id: str, *states: str, reason: str = "") -> None:
    with Session(board.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        for state in states:
            run_service.transition(session, run, state, reason=reason or state, source="agent")
        session.commit()


def _fail(board: Any, run_id: str, reason: str) -> None:
    _move(board, run_id, "queued", "dispatched", "running")
    _move(board, run_id, "failed", reason=reason)


def _online(board: Any, site: str, agent: str, device: str) -> None:
    presence = Presence(
        site=site,
        agent=agent,
        state="online",
        devices=[{"name": device, "driver": "modbus", "profile": f"{device}-profile"}],
    )
    with Session(board.engine) as session:
        apply_presence(session, presence)
        session.commit()


@pytest.fixture
def two_sites(board: Any) -> dict[str, Any]:
    """Site A: one failed run, one pending, one agent online.
    Site B: two failed runs, one pending, two agents online."""
    a_failed, a_failed_run = _task(board, SITE_A, "alpha failing read")
    _fail(board, a_failed_run, "alpha pump jammed")
    _, a_pending_run = _task(board, SITE_A, "alpha pending read")
    b_ids = []
    for n in range(2):
        b_task, b_run = _task(board, SITE_B, f"bravo failing read {n}")
        _fail(board, b_run, "bravo valve stuck")
        b_ids.append((b_task, b_run))
    _, b_pending_run = _task(board, SITE_B, "bravo pending read")
    _online(board, SITE_A, "skid-a1", "alpha-tank")
    _online(board, SITE_B, "skid-b1", "bravo-boiler")
    _online(board, SITE_B, "skid-b2", "bravo-kiln")
    return {
        "a_task": a_failed,
        "a_run": a_failed_run,
        "a_pending_run": a_pending_run,
        "b_task": b_ids[0][0],
        "b_run": b_ids[0][1],
        "b_pending_run": b_pending_run,
    }


def _text(user: User, marker: str) -> str:
    element = user.find(marker=marker).elements.pop()
    assert isinstance(element, ui.label)
    return element.text


def _chart_total(user: User) -> int:
    chart = user.find(ui.echart).elements.pop()
    return sum(chart.options["series"][0]["data"])


async def test_overview_counts_only_the_granted_sites(
    user: User, board, sign_in, two_sites
) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open("/")
    await user.should_see("Runs by state")
    assert _text(user, "overview-agents") == "1 / 1"
    assert _text(user, "overview-sites") == "1"
    assert _text(user, "overview-failures") == "1"
    await user.should_see("failed: 1")
    await user.should_see("pending: 1")
    await user.should_not_see("failed: 3")
    await user.should_not_see("pending: 2")
    assert _chart_total(user) == 2  # A's two runs this hour, none of B's three
    await user.should_see("alpha failing read")
    await user.should_see("alpha pump jammed")
    await user.should_not_see("bravo")


async def test_overview_stays_scoped_when_it_refreshes_live(
    user: User, board, sign_in, two_sites
) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open("/")
    await user.should_see("pending: 1")
    # one change on each site; the page redraws its counts on any run change
    _move(board, two_sites["b_pending_run"], "canceled")
    _move(board, two_sites["a_pending_run"], "canceled")
    await user.should_see("canceled: 1", retries=LIVE)
    await user.should_not_see("canceled: 2")
    await user.should_not_see("pending")
    assert _chart_total(user) == 2
    assert _text(user, "overview-agents") == "1 / 1"


async def test_an_all_sites_viewer_still_sees_every_site(
    user: User, board, sign_in, two_sites
) -> None:
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see("failed: 3")
    assert _text(user, "overview-agents") == "3 / 3"
    assert _text(user, "overview-sites") == "2"
    assert _chart_total(user) == 5


async def test_reports_count_only_the_granted_sites(user: User, board, sign_in, two_sites) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open("/reports?days=7&group_by=site")
    await user.should_see("Top failure reasons")
    table = user.find(ui.table).elements.pop()
    assert [(r["key"], r["runs"], r["failed"]) for r in table.rows] == [(SITE_A, 1, 1)]
    await user.should_see("1 run: alpha pump jammed")
    await user.should_not_see("bravo valve stuck")


async def test_tasks_list_pages_through_the_granted_sites_only(
    user: User, board, sign_in, two_sites
) -> None:
    # a full page of newer tasks on B must not push A's tasks off the first page
    for n in range(PAGE_SIZE):
        _task(board, SITE_B, f"bravo later read {n}")
    sign_in(user, "operator", SITE_A)
    await user.open("/tasks")
    await user.should_see("alpha failing read")
    await user.should_see("alpha pending read")
    await user.should_not_see("bravo")
    await user.should_not_see("Next page")


async def test_tasks_list_filtered_to_another_site_shows_nothing(
    user: User, board, sign_in, two_sites
) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open(f"/tasks?site={SITE_B}")
    await user.should_see("No tasks match.")
    await user.should_not_see("bravo")


async def test_another_sites_task_page_is_not_found(user: User, board, sign_in, two_sites) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open(f"/tasks/{two_sites['b_task']}")
    await user.should_see(f"There is no task {two_sites['b_task']}.")
    await user.should_not_see("bravo")
    await user.should_not_see("Run now")
    await user.open(f"/tasks/{two_sites['a_task']}")
    await user.should_see("alpha failing read")


async def test_task_page_lists_no_dependent_of_another_site(
    user: User, board, sign_in, two_sites
) -> None:
    """A task of B waiting on A's task: A's page does not link to it (B's to know)."""
    body = TaskCreate.model_validate(
        {
            "name": "bravo after alpha",
            "op": "noop",
            "target": {"site": SITE_B, "agent": "skid-b1"},
            "depends_on": [{"task": two_sites["a_task"], "on": "any"}],
        }
    )
    with Session(board.engine) as session:
        dependent, _ = create_task(session, body)
        session.commit()
        dependent_id = dependent.id
    sign_in(user, "operator", SITE_A)
    await user.open(f"/tasks/{two_sites['a_task']}")
    await user.should_see("Dependencies")
    await user.should_not_see(f"task {dependent_id}")
    targets = {link.props.get("href", "") for link in user.find(ui.link).elements}
    assert f"/tasks/{dependent_id}" not in targets
    sign_in(user, "admin")  # one who sees B still finds the edge
    await user.open(f"/tasks/{two_sites['a_task']}")
    await user.should_see(f"task {dependent_id}")


async def test_another_sites_run_page_is_not_found(user: User, board, sign_in, two_sites) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open(f"/runs/{two_sites['b_run']}")
    await user.should_see(f"There is no run {two_sites['b_run']}.")
    await user.should_not_see("bravo")
    await user.should_not_see("Cancel run")
    await user.open(f"/runs/{two_sites['a_run']}")
    await user.should_see("alpha pump jammed")


async def test_another_sites_workflow_page_is_not_found(
    user: User, board, sign_in, two_sites
) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open(f"/workflows/{two_sites['b_run']}")
    await user.should_see(f"There is no workflow run {two_sites['b_run']}.")
    await user.should_not_see("bravo")
    await user.open(f"/workflows/{two_sites['a_run']}")
    await user.should_see("alpha failing read")


async def test_fleet_shows_only_the_granted_sites(user: User, board, sign_in, two_sites) -> None:
    sign_in(user, "operator", SITE_A)
    await user.open("/fleet")
    await user.should_see("skid-a1")
    await user.should_see("alpha-tank")
    for hidden in (SITE_B, "skid-b1", "skid-b2", "bravo-boiler", "bravo-kiln"):
        await user.should_not_see(hidden)


async def test_run_links_of_another_site_never_show(user: User, board, sign_in, two_sites) -> None:
    """No page of A links to B's runs or tasks (their ids are B's to know)."""
    sign_in(user, "operator", SITE_A)
    with Session(board.engine) as session:
        b_task = session.get(Task, two_sites["b_task"])
        assert b_task is not None and b_task.site == SITE_B
    for path in ("/", "/tasks", "/fleet", "/reports"):
        await user.open(path)
        targets = {link.props.get("href", "") for link in user.find(ui.link).elements}
        assert not any(two_sites["b_run"] in t for t in targets), path
        assert f"/tasks/{two_sites['b_task']}" not in targets, path
