"""What an operator's pass over the dashboard found: each test is one thing a person
saw go wrong (a page that failed, a figure that stayed behind, a message that did not
say which field), checked under NiceGUI's simulated user."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from nicegui import ui
from nicegui.testing import User
from sqlmodel import Session
from test_live_pages import LIVE, _latest_run, _move, _new_run, _succeed, _task
from test_pages import _move as _move_with
from waiting import wait_until_async

from tme.controller.store.models import Run, Task, utcnow
from tme.protocol import Presence
from tme.states import TASK_STATUSES
from tme.ui.theme import SESSION_CHECK_S

SESSION_CHECK = int(SESSION_CHECK_S * 10) + 15  # should_see looks every 0.1 s


async def test_a_state_filter_that_is_no_task_status_says_so(user: User, board, sign_in) -> None:
    _task(board, name="read tank level")
    sign_in(user, "viewer")
    await user.open("/tasks?status=runing")  # a typo in a bookmark, or a hand-made link
    await user.should_see("unknown status 'runing'")
    await user.should_see('did you mean "running"')
    await user.should_not_see("read tank level")


async def test_the_state_filter_offers_the_task_statuses(user: User, board, sign_in) -> None:
    _succeed(board, _latest_run(board, _task(board, name="read tank level")))
    _task(board, name="read pump speed")
    sign_in(user, "viewer")
    await user.open("/tasks?status=complete")  # a report word names its state, as in the API
    await user.should_see("read tank level")
    await user.should_not_see("read pump speed")
    state = user.find(ui.select).elements.pop()
    assert isinstance(state, ui.select)
    assert state.value == "succeeded"
    assert list(state.options) == ["", *TASK_STATUSES]  # no "online", no "idle" twice


def _fail(board, task_id: int, reason: str = "modbus timeout") -> None:
    _move(board, _latest_run(board, task_id), "queued", "dispatched", "running", "failed")


async def test_the_overview_counts_every_failure_of_the_day(user: User, board, sign_in) -> None:
    for n in range(23):  # more than the list of the latest failures shows
        _fail(board, _task(board, name=f"read tank {n}"))
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see(marker="overview-failures", content="23")


async def test_the_overview_shows_a_failure_as_it_happens(user: User, board, sign_in) -> None:
    task_id = _task(board, name="read tank level")
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see(marker="overview-failures", content="0")
    _fail(board, task_id)
    await user.should_see("failed: 1", retries=LIVE)  # the runs by state followed already
    await user.should_see(marker="overview-failures", content="1", retries=LIVE)
    await user.should_see(marker="overview-failure", content="read tank level", retries=LIVE)


async def test_the_task_page_shows_why_a_run_failed_as_it_fails(user: User, board, sign_in) -> None:
    task_id = _task(board, name="read tank level")
    first = _latest_run(board, task_id)
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="task-status", content="pending")
    _move_with(board, first, "failed", "modbus timeout on unit 2")
    await user.should_see(marker="task-status", content="failed", retries=LIVE)
    await user.should_see(marker="run-reason", content="modbus timeout on unit 2", retries=LIVE)
    second = _new_run(board, task_id)  # a run that starts while the page is open
    await user.should_see(marker="task-status", content="pending", retries=LIVE)
    _move_with(board, second, "failed", "no answer in time")
    await user.should_see(marker="run-reason", content="no answer in time", retries=LIVE)


async def test_the_duration_chart_takes_every_run_that_ended(user: User, board, sign_in) -> None:
    task_id = _task(board, name="read tank level")
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="task-status", content="pending")
    _move(board, _latest_run(board, task_id), "queued", "dispatched", "running", "timed_out")
    await user.should_see(marker="task-status", content="timed_out", retries=LIVE)
    chart = user.find(ui.echart).elements.pop()
    assert isinstance(chart, ui.echart)
    durations = chart.options["series"][0]
    await wait_until_async(lambda: durations["data"] and durations["data"][0] is not None, 2)


def _presence(board, agent: str, state: str, site: str = "plant-x") -> None:
    """A presence as the event consumer handles it: applied, then told to the feed."""
    from tme.controller.event_apply import apply_presence

    presence = Presence(site=site, agent=agent, state=state)
    with Session(board.engine) as session:
        apply_presence(session, presence)
        session.commit()
    board.change_feed.on_message(presence)


async def test_the_fleet_pages_sites_follow_their_agents(user: User, board, sign_in) -> None:
    _presence(board, "skid-a", "online")
    _presence(board, "line-b", "online")
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see(marker="fleet-site", content="plant-x: 2/2 agents online")
    _presence(board, "line-b", "offline")
    await user.should_see(marker="fleet-site", content="plant-x: 1/2 agents online", retries=LIVE)


async def test_signing_in_keeps_the_filters_of_a_bookmarked_view(user: User) -> None:
    await user.open("/tasks?status=failed&site=plant-x")  # a bookmark, before signing in
    await user.should_see("Sign in to the dashboard")
    login = urlparse(user.back_history[-1])
    assert login.path == "/login"
    assert parse_qs(login.query)["next"] == ["/tasks?status=failed&site=plant-x"]


async def test_a_timeout_that_is_no_number_is_named_and_kept(user: User, board, sign_in) -> None:
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("New task").click()
    user.find(marker="task-name").type("read tank level")
    user.find(marker="task-site").type("plant-x")
    user.find(marker="task-agent").type("skid-a")
    user.find(marker="task-device").type("tank1")
    user.find(marker="task-params").clear().type('{"point": "level"}')
    user.find(marker="task-timeout_s").type("30s")
    user.find("Create").click()
    await user.should_see("timeout_s: Input should be a number, not text")  # as the API says it
    assert user.find(marker="task-timeout_s").elements.pop().value == "30s"  # kept to correct
    assert user.find(marker="task-name").elements.pop().value == "read tank level"


async def test_a_device_not_answering_says_since_when_as_other_times(
    user: User, board, sign_in
) -> None:
    from tme.controller.event_apply import apply_presence

    down = {"state": "down", "since": "2026-12-07T06:00:00.250000+00:00", "error": "no answer"}
    tank = {"name": "tank1", "profile": "tank", "points": [], "link": down}
    with Session(board.engine) as session:
        apply_presence(
            session, Presence(site="plant-x", agent="skid-a", state="online", devices=[tank])
        )
        session.commit()
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see(
        marker="device-link",
        content="Not answering its agent since 2026-12-07 06:00:00 UTC: no answer",
    )


async def test_the_task_definition_does_not_contradict_its_status(
    user: User, board, sign_in
) -> None:
    task_id = _task(board, name="read tank level")
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="task-status", content="pending")
    _fail(board, task_id)
    await user.should_see(marker="task-status", content="failed", retries=LIVE)
    definition = user.find(ui.code).elements.pop()
    assert isinstance(definition, ui.code)
    assert '"name": "read tank level"' in definition.content
    assert '"status"' not in definition.content  # the chip above says it, live
    assert '"latest_run_id"' not in definition.content  # the runs below say it, live


def _audited(board, action: str) -> list[tuple[str, str, str]]:
    from tme.controller.services.audit import AuditFilters, query

    with Session(board.engine) as session:
        rows = query(session, AuditFilters(action=action))
        return [(row.actor, row.target, row.outcome) for row in rows]


async def test_a_refused_dashboard_action_is_in_the_audit_log(user: User, board, sign_in) -> None:
    task_id = _task(board)
    _move(board, _latest_run(board, task_id), "queued", "dispatched", "running")
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("Delete").click()
    user.find(marker="confirm-delete").click()
    await user.should_see("in flight")  # refused: a run of the task is on its way
    # as the API's refused DELETE is: who tried what, and that it failed
    assert _audited(board, "task.write:delete") == [("operator-0", f"task {task_id}", "failed")]


async def test_an_open_page_stops_showing_changes_once_its_session_ends(
    user: User, board, sign_in
) -> None:
    from tme.controller.services.users import disable_user

    task_id = _task(board, name="read tank level")
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="task-status", content="pending")
    with Session(board.engine) as session:  # tme user disable: its sessions end
        disable_user(session, "viewer-0")
        session.commit()
    # the page leaves for the sign-in page, as a click would have found
    await user.should_see("Sign in to the dashboard", retries=SESSION_CHECK)
    _fail(board, task_id)
    await user.should_not_see("failed", retries=LIVE)


async def test_times_say_they_are_utc(user: User, board, sign_in) -> None:
    lockout = {"by": "alice", "reason": "seal replacement", "at": "2026-12-07T06:00:00+00:00"}
    tank = {"name": "tank1", "profile": "tank", "points": [], "lockout": lockout}
    from tme.controller.event_apply import apply_presence

    with Session(board.engine) as session:
        apply_presence(
            session, Presence(site="plant-x", agent="skid-a", state="online", devices=[tank])
        )
        session.commit()
    sign_in(user, "admin")
    await user.open("/fleet")  # an operator abroad reads them against the wall clock
    await user.should_see(marker="device-lockout", content="since 2026-12-07 06:00:00 UTC")
    await user.should_see(marker="fleet-site", content=" UTC")
    from tme.controller.services import audit

    audit.record(board.engine, "task.write:create", actor="alice", target="task 1")
    await user.open("/audit")
    table = user.find(ui.table).elements.pop()
    assert isinstance(table, ui.table)
    assert table.rows and all(row["at"].endswith(" UTC") for row in table.rows)


async def test_enter_in_any_filter_field_applies_the_filters(user: User, board, sign_in) -> None:
    sign_in(user, "admin")
    await user.open("/tasks")
    user.find(marker="filter-site").type("plant-x").trigger("keydown.enter")
    await wait_until_async(lambda: user.back_history[-1] == "/tasks?site=plant-x", 2)
    await user.open("/audit")
    user.find(marker="filter-actor").type("alice").trigger("keydown.enter")
    await wait_until_async(lambda: user.back_history[-1] == "/audit?actor=alice", 2)
    user.find(marker="filter-action").type("task.").trigger("keydown.enter")
    await wait_until_async(lambda: user.back_history[-1] == "/audit?actor=alice&action=task.", 2)


async def test_a_run_that_ended_without_a_result_does_not_promise_one(
    user: User, board, sign_in
) -> None:
    run_id = _latest_run(board, _task(board, name="read tank level"))
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("no result yet")  # pending: one may come
    _move(board, run_id, "queued", "dispatched", "running", "canceled")
    await user.should_see(marker="run-state", content="canceled", retries=LIVE)
    await user.should_see(marker="run-result", content="no result: the run ended without one")
    await user.should_not_see("no result yet")


async def test_the_schedule_field_is_for_roles_that_may_set_one(user: User, board, sign_in) -> None:
    sign_in(user, "operator")  # an operator's schedule is refused: engineers set them
    await user.open("/tasks")
    user.find("New task").click()
    await user.should_see(marker="task-name")
    await user.should_not_see(marker="task-cron")
    sign_in(user, "engineer")
    await user.open("/tasks")
    user.find("New task").click()
    await user.should_see(marker="task-cron")


def _fill_read_task(user: User, name: str) -> None:
    user.find("New task").click()
    user.find(marker="task-name").type(name)
    user.find(marker="task-site").type("plant-x")
    user.find(marker="task-agent").type("skid-a")
    user.find(marker="task-device").type("tank1")
    user.find(marker="task-params").clear().type('{"point": "level"}')


async def test_a_timeout_typed_in_the_form_goes_as_a_number(user: User, board, sign_in) -> None:
    # The API refuses text for a number ("30" in a JSON body): the form's field is text,
    # so the form sends the number typed.
    sign_in(user, "engineer")
    await user.open("/tasks")
    _fill_read_task(user, "timed tank level")
    user.find(marker="task-timeout_s").type(" 45 ")
    user.find("Create").click()
    await user.should_see("Task 1: timed tank level")
    with Session(board.engine) as session:
        task = session.get(Task, 1)
        assert task is not None and task.timeout_s == 45


async def test_the_new_task_form_takes_the_schedules_time_zone(user: User, board, sign_in) -> None:
    sign_in(user, "engineer")
    await user.open("/tasks")
    _fill_read_task(user, "morning tank level")
    user.find(marker="task-cron").type("0 6 * * *")  # 06:00 at the plant, as the CLI's --timezone
    user.find(marker="task-timezone").clear().type("Europe/Berlin")
    user.find("Create").click()
    await user.should_see("Task 1: morning tank level")
    await user.should_see("06:00:00+01:00")  # its next fire times, in the schedule's zone
    with Session(board.engine) as session:
        task = session.get(Task, 1)
        assert task is not None
        assert task.schedule
        assert (task.schedule["cron"], task.schedule["timezone"]) == ("0 6 * * *", "Europe/Berlin")


async def test_a_time_zone_without_a_schedule_is_refused(user: User, board, sign_in) -> None:
    sign_in(user, "engineer")
    await user.open("/tasks")
    _fill_read_task(user, "tank level")
    user.find(marker="task-timezone").clear().type("Europe/Berlin")
    user.find("Create").click()
    await user.should_see("schedule.timezone: a time zone needs a schedule (cron)")
    user.find(marker="task-cron").type("0 6 * * *")  # nothing typed was lost: add the cron
    user.find(marker="task-timezone").clear().type("Europe/Berlim")
    user.find("Create").click()
    await user.should_see("schedule.timezone")  # the schema's own words for an unknown zone


async def test_the_fleet_page_tells_of_an_agent_seen_for_the_first_time(
    user: User, board, sign_in
) -> None:
    _presence(board, "skid-a", "online")
    sign_in(user, "viewer", sites="plant-x")
    await user.open("/fleet")
    await user.should_see(marker="fleet-site", content="plant-x: 1/1 agents online")
    await user.should_not_see(marker="new-agents")
    _presence(board, "skid-a", "online", site="plant-y")  # outside the grant: not told
    _presence(board, "line-b", "online")  # a new agent, and its devices, at the site
    await user.should_see(marker="new-agents", content="1 new agent since", retries=LIVE)
    await user.should_see("Reload")


async def test_the_overview_moves_with_the_clock_when_nothing_changes(
    user: User, board, sign_in, monkeypatch
) -> None:
    from tme.ui.pages import overview

    # The last hour and the last 24 h move on with no change to tell of: a failure ages
    # out, a quiet minute joins the chart. Shortened here from a minute.
    monkeypatch.setattr(overview, "CLOCK_REFRESH_S", 0.2)
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see(marker="overview-failures", content="0")
    with Session(board.engine) as session:  # rows no feed tells of: the clock's to find
        task = Task(name="read tank level", op="external", status="failed")
        session.add(task)
        session.commit()
        task_id = task.id
        now = utcnow()
        session.add(Run(task_id=task_id, state="failed", created_at=now, finished_at=now))
        session.commit()
    await user.should_see(marker="overview-failures", content="1", retries=LIVE)


async def test_a_hand_made_url_gets_the_pages_own_answer(user: User, sign_in) -> None:
    sign_in(user, "viewer")
    await user.open("/tasks/12abc")  # a link cut short or typed by hand
    await user.should_see("There is no task 12abc.")
    await user.open("/reports?days=week")
    await user.should_see("Reports")
    period = user.find(marker="report-period").elements.pop()
    assert isinstance(period, ui.select)
    assert period.value == 7  # as for a number of days it does not offer


async def test_the_task_page_tells_what_the_fleet_says_as_it_says_it(
    user: User, board, sign_in
) -> None:
    from tme.controller.event_apply import apply_presence

    level = {"name": "level", "type": "float32", "unit": "m", "access": "rw"}
    tank = {"name": "tank1", "profile": "tank", "points": [level]}

    def arrives(devices: list[dict]) -> None:  # applied, then told, as the consumer does
        presence = Presence(site="plant-x", agent="skid-a", state="online", devices=devices)
        with Session(board.engine) as session:
            apply_presence(session, presence)
            session.commit()
        board.change_feed.on_message(presence)

    arrives([tank])
    task_id = _task(board, op="modbus.write", params={"point": "level", "value": 2})
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Definition")
    await user.should_not_see(marker="fleet-notice")
    lockout = {"by": "alice", "reason": "seal replacement", "at": "2026-12-07T06:00:00+00:00"}
    arrives([{**tank, "lockout": lockout}])  # tme agent lock tank1 at skid-a
    await user.should_see(marker="fleet-notice", content="seal replacement", retries=LIVE)
    arrives([tank])  # unlocked there
    await user.should_not_see(marker="fleet-notice", retries=LIVE)


async def test_report_counts_read_as_english(user: User, board, sign_in) -> None:
    _move_with(board, _latest_run(board, _task(board)), "failed", "modbus timeout on unit 2")
    sign_in(user, "viewer")
    await user.open("/reports?days=1")
    await user.should_see("1 run: modbus timeout on unit 2")
    await user.should_not_see("1 runs")


async def test_the_task_pages_run_history_keeps_to_the_last_50(user: User, board, sign_in) -> None:
    from tme.ui.pages.task import RUNS_SHOWN

    task_id = _task(board, name="read tank level")
    first = _latest_run(board, task_id)
    for _ in range(RUNS_SHOWN - 1):
        _move(board, _latest_run(board, task_id), "canceled")
        _new_run(board, task_id)
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(first[:8])  # the 50th newest: still on the page
    _move(board, _latest_run(board, task_id), "canceled")
    newest = _new_run(board, task_id)  # a schedule firing every second, a day long
    await user.should_see(newest[:8], retries=LIVE)
    await user.should_not_see(first[:8])  # the page keeps the last 50, as it opened with
    assert len(user.find(marker="run-reason").elements) == RUNS_SHOWN
