"""Each dashboard page and action under NiceGUI's simulated user."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from nicegui import ui
from nicegui.testing import User
from sqlmodel import Session, select
from timed_runs import noop_task, run_taking

from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, Task
from tme.protocol import Presence
from tme.schemas import TaskCreate

# should_see retries every 0.1 s: a change must show within 1.5 s (the goal is one
# second; the margin is for a loaded test machine).
LIVE = 15


def _task(board: Any, **fields: Any) -> int:
    body = TaskCreate.model_validate(
        {
            "name": "read tank level",
            "op": "modbus.read",
            "target": {"site": "plant-x", "agent": "skid-a", "device": "tank1"},
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


def _move(board: Any, run_id: str, state: str, reason: str = "") -> None:
    with Session(board.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None
        run_service.transition(session, run, state, reason=reason or state, source="agent")
        session.commit()


async def test_a_visitor_without_a_session_is_sent_to_the_login_page(user: User) -> None:
    await user.open("/tasks")
    await user.should_see("Sign in to the dashboard")
    await user.should_not_see("New task")


async def test_overview_shows_runs_by_state_and_agents(user: User, board, sign_in) -> None:
    _task(board)
    board.change_feed.on_message(Presence(site="plant-x", agent="skid-a", state="online"))
    from tme.controller.event_apply import apply_presence

    with Session(board.engine) as session:
        apply_presence(session, Presence(site="plant-x", agent="skid-a", state="online"))
        session.commit()
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see("Overview")
    await user.should_see("pending: 1")
    await user.should_see("1 / 1")


async def test_tasks_list_filters_from_the_url(user: User, board, sign_in) -> None:
    _task(board, name="alpha pump")
    _task(board, name="beta conveyor")
    sign_in(user, "viewer")
    await user.open("/tasks?q=beta")
    await user.should_see("beta conveyor")
    await user.should_not_see("alpha pump")


async def test_a_viewer_sees_no_action_buttons(user: User, board, sign_in) -> None:
    _task(board)
    sign_in(user, "viewer")
    await user.open("/tasks")
    await user.should_see("read tank level")
    for label in ("New task", "Run now", "Cancel", "Delete"):
        await user.should_not_see(label)


async def test_an_operator_sees_the_actions(user: User, board, sign_in) -> None:
    _task(board)
    sign_in(user, "operator")
    await user.open("/tasks")
    for label in ("New task", "Run now", "Cancel", "Delete"):
        await user.should_see(label)


async def test_create_form_refuses_what_the_api_refuses(user: User, board, sign_in) -> None:
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("New task").click()
    user.find(marker="task-name").type("write without a value")
    user.find(marker="task-op").click()
    user.find("modbus.write").click()
    user.find(marker="task-site").type("plant-x")
    user.find(marker="task-agent").type("skid-a")
    user.find(marker="task-device").type("pump1")
    user.find(marker="task-params").clear().type('{"point": "speed_setpoint"}')
    user.find("Create").click()
    await user.should_see("value")  # the schema's own message about the missing value
    with Session(board.engine) as session:
        assert session.exec(select(Task)).all() == []


async def test_create_form_creates_a_task(user: User, board, sign_in) -> None:
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("New task").click()
    user.find(marker="task-name").type("set pump speed")
    user.find(marker="task-op").click()
    user.find("modbus.write").click()
    user.find(marker="task-site").type("plant-x")
    user.find(marker="task-agent").type("skid-a")
    user.find(marker="task-device").type("pump1")
    user.find(marker="task-params").clear().type('{"point": "speed_setpoint", "value": 1200}')
    user.find("Create").click()
    await user.should_see("Task 1: set pump speed")
    with Session(board.engine) as session:
        task = session.exec(select(Task)).one()
        assert task.params == {"point": "speed_setpoint", "value": 1200, "verify": False} or (
            task.params["value"] == 1200
        )


async def test_state_change_reaches_the_open_tasks_page(user: User, board, sign_in) -> None:
    task_id = _task(board)
    sign_in(user, "viewer")
    await user.open("/tasks")
    chip = next(iter(user.find(ui.badge).elements))
    assert chip.text == "pending"
    _move(board, _latest_run(board, task_id), "canceled")
    await user.should_see("canceled", retries=LIVE)  # no reload: the live hub updated the chip


async def test_run_now_and_cancel(user: User, board, sign_in) -> None:
    task_id = _task(board)
    _move(board, _latest_run(board, task_id), "canceled")
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("Run now").click()
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None and task.status == "pending"
    # which run it started, not only "done"
    await user.should_see(f"started run {task.latest_run_id} of task {task_id} (pending)")
    user.find("Cancel").click()
    with Session(board.engine) as session:
        assert session.get(Task, task_id).status == "canceled"  # type: ignore[union-attr]


async def test_delete_asks_for_confirmation(user: User, board, sign_in) -> None:
    task_id = _task(board)
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("Delete").click()
    await user.should_see(f"Delete task {task_id}")
    with Session(board.engine) as session:
        assert session.get(Task, task_id) is not None
    user.find(marker="confirm-delete").click()
    with Session(board.engine) as session:
        assert session.get(Task, task_id) is None


async def test_task_page_shows_definition_schedule_and_runs(user: User, board, sign_in) -> None:
    task_id = _task(board, schedule={"cron": "0 6 * * 1-5"})
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Definition")
    await user.should_see("06:00:00")  # a next fire time


async def test_task_page_shows_its_exclusive_resources(user: User, board, sign_in) -> None:
    task_id = _task(board, resources=["tank1", "cell-a"])
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Exclusive resources")
    await user.should_see("tank1, cell-a", marker="task-resources")
    await user.should_see("cell-a:", marker="resource-cell-a")


async def test_task_page_says_who_holds_its_resources(user: User, board, sign_in) -> None:
    import threading

    from tme.controller.run_ready import RunReady

    made = []
    with Session(board.engine) as session:  # as the controller creates them: the hook
        hook = RunReady(board.settings, threading.Event())
        for name in ("flush", "fill"):
            body = TaskCreate.model_validate(
                {
                    "name": name,
                    "op": "external",
                    "target": {"site": "plant-x"},
                    "resources": ["tank1"],
                }
            )
            task, _ = create_task(session, body, on_run_ready=hook)
            made.append((task.id, task.latest_run_id))
        session.commit()
    (flush_id, flush_run), (fill_id, _) = made
    sign_in(user, "viewer")
    await user.open(f"/tasks/{fill_id}")
    await user.should_see(marker="resource-tank1", content=f"task {flush_id}")
    await user.should_see(marker="resource-tank1", content=flush_run[:8])
    await user.should_see(marker="resource-tank1", content="1 run(s) waiting for it")


async def test_run_page_shows_timeline_result_and_reason(user: User, board, sign_in) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("pending")
    _move(board, run_id, "failed", reason="modbus timeout on unit 2")
    await user.should_see("modbus timeout on unit 2", retries=LIVE)


async def test_fleet_page_shows_presence(user: User, board, sign_in) -> None:
    from tme.controller.event_apply import apply_presence

    with Session(board.engine) as session:
        apply_presence(session, Presence(site="plant-x", agent="line-b", state="online"))
        session.commit()
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("line-b")
    await user.should_see("online")
    with Session(board.engine) as session:
        apply_presence(session, Presence(site="plant-x", agent="line-b", state="offline"))
        session.commit()
    board.change_feed.on_message(Presence(site="plant-x", agent="line-b", state="offline"))
    await user.should_see("offline", retries=LIVE)


async def test_fleet_page_shows_serial_command_argument_limits(user: User, board, sign_in) -> None:
    from pathlib import Path

    from tme.controller.event_apply import apply_presence
    from tme.drivers.profile import load_profile

    profile = Path(__file__).resolve().parents[2] / "configs" / "profiles" / "instrument.yaml"
    points = load_profile(profile).public_points()
    meter = {"name": "meter1", "profile": "instrument", "points": points}
    with Session(board.engine) as session:
        apply_presence(
            session, Presence(site="plant-x", agent="lab-c", state="online", devices=[meter])
        )
        session.commit()
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("meter1")
    await user.should_see("str rw args float 0..30")  # set_voltage (its reply: text)
    await user.should_see("str rw args str ON|OFF")  # output


async def test_reports_page_and_csv_link(user: User, board, sign_in) -> None:
    task_id = _task(board)
    run_id = _latest_run(board, task_id)
    for state in ("queued", "dispatched", "running", "succeeded"):
        _move(board, run_id, state)
    sign_in(user, "viewer")
    await user.open("/reports?days=7&group_by=op")
    await user.should_see("Export CSV")
    await user.should_see(kind=ui.table)  # the report fills in once the database answered
    table = user.find(ui.table).elements.pop()
    assert [(r["key"], r["runs"], r["success_rate"]) for r in table.rows] == [
        ("modbus.read", 1, 1.0)
    ]


async def test_audit_is_for_admins(user: User, board, sign_in) -> None:
    sign_in(user, "operator")
    await user.open("/audit")
    await user.should_see("The audit log is for administrators.")


async def test_audit_is_for_admins_of_every_site(user: User, board, sign_in) -> None:
    sign_in(user, "admin", "site-a")
    await user.open("/audit")
    await user.should_see("The audit log covers every site")
    await user.should_not_see("Filter")


async def test_audit_with_an_outcome_it_never_records_says_so(user: User, board, sign_in) -> None:
    # ?outcome=x (a hand-edited or old link) was a 500: the outcome list refused the value.
    sign_in(user, "admin")
    await user.open("/audit?outcome=oops")
    await user.should_see("outcome: unknown outcome 'oops'; one of: ok, failed, refused")
    assert user.find(ui.table).elements.pop().rows == []
    await user.open("/audit?outcome=failed")
    await user.should_not_see(marker="filter-problem")


async def test_task_page_shows_the_fire_times_the_controller_keeps(
    user: User, board, sign_in
) -> None:
    # An interval counts from when it was set (not from the page's opening), in the
    # site's zone; a paused schedule shows no fire times at all.
    from datetime import timedelta

    from tme.controller.services.policies import get_policy

    task_id = _task(board, schedule={"every_s": 3600, "timezone": "Asia/Kolkata"})
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        policy = get_policy(session, task)
        policy.schedule_changed_at -= timedelta(minutes=20)
        session.commit()
        first = (policy.schedule_changed_at + timedelta(hours=1)).astimezone(
            ZoneInfo("Asia/Kolkata")
        )
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(first.isoformat())
    with Session(board.engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        get_policy(session, task).paused = True
        session.commit()
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Paused")
    await user.should_not_see(first.isoformat())


def _publish(board: Any, agent: str, devices: list[dict[str, Any]]) -> None:
    from tme.controller.event_apply import apply_presence

    with Session(board.engine) as session:
        presence = Presence(site="plant-x", agent=agent, state="online", devices=devices)
        apply_presence(session, presence)
        session.commit()


async def test_task_page_says_its_agent_was_never_seen(user: User, board, sign_in) -> None:
    task_id = _task(board)  # skid-a at plant-x: no presence of either yet
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="fleet-notice", content="has never been seen")


async def test_task_page_says_what_its_agent_would_refuse_as_it_stands(
    user: User, board, sign_in
) -> None:
    level = {"name": "level", "type": "float32", "unit": "m", "access": "r"}
    volume = {"name": "volume", "type": "float32", "unit": "m3", "access": "r"}
    _publish(board, "skid-a", [{"name": "tank1", "profile": "tank", "points": [level]}])
    task_id = _task(board)  # a read of tank1's level: what skid-a published has it
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Definition")
    await user.should_not_see(marker="fleet-notice")
    # skid-a comes back with a new profile for tank1, without the point "level"
    _publish(board, "skid-a", [{"name": "tank1", "profile": "tank", "points": [volume]}])
    await user.open(f"/tasks/{task_id}")
    await user.should_see(marker="fleet-notice", content="its agent would refuse it as it stands")
    await user.should_see(marker="fleet-notice", content="has no point 'level'")


async def test_run_page_shows_its_cause_and_when_it_is_settled(user: User, board, sign_in) -> None:
    import threading

    from tme.controller.run_ready import RunReady
    from tme.controller.workflow import settle_pending

    body = TaskCreate.model_validate(
        {"name": "flush", "op": "noop", "target": {"site": "plant-x", "agent": "skid-a"}}
    )
    with Session(board.engine) as session:  # as the controller creates it: with its link
        hook = RunReady(board.settings, threading.Event())
        task, _ = create_task(session, body, on_run_ready=hook)
        session.commit()
        run_id = task.latest_run_id
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see(marker="run-cause", content="cause: created")
    await user.should_see(marker="run-settled", content="outcome pending")
    _move(board, run_id, "failed", reason="modbus timeout on unit 2")
    await user.should_see(marker="run-settled", content="settling", retries=LIVE)
    with Session(board.engine) as session:  # the workflow pass acts on the outcome
        settle_pending(session, None)
        session.commit()
    await user.should_see(marker="run-settled", content="settled: its retry", retries=LIVE)


async def test_fleet_page_shows_step_limits_safe_values_and_interlocks(
    user: User, board, sign_in
) -> None:
    from pathlib import Path

    from tme.controller.event_apply import apply_presence
    from tme.drivers.profile import load_profile

    profile = Path(__file__).resolve().parents[2] / "configs" / "profiles" / "pump.yaml"
    points = load_profile(profile).public_points()
    needs = {"device": "tank1", "point": "level", "below": 95, "why": "tank nearly full"}
    for point in points:
        if point["name"] == "run":
            point["interlocks"] = [needs]  # as the agent adds its config's interlocks
    pump = {"name": "pump1", "profile": "pump", "points": points}
    with Session(board.engine) as session:
        apply_presence(
            session, Presence(site="plant-x", agent="skid-a", state="online", devices=[pump])
        )
        session.commit()
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("bool rw safe false, needs tank1.level below 95 (tank nearly full)")
    await user.should_see("uint16 rw range 0..3000, safe 0")


async def test_fleet_page_shows_a_device_locked_out_at_its_agent(
    user: User, board, sign_in
) -> None:
    lockout = {"by": "alice", "reason": "seal replacement", "at": "2026-12-07T06:00:00+00:00"}
    points = [{"name": "level", "type": "float32", "unit": "m", "access": "r"}]
    tank = {"name": "tank1", "profile": "tank", "points": points, "lockout": lockout}
    _publish(board, "skid-a", [tank])
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("plant-x/skid-a/tank1 (tank) LOCKED OUT")
    await user.should_see(marker="device-lockout", content="by alice since 2026-12-07 06:00")
    await user.should_see(marker="device-lockout", content="seal replacement")


async def test_fleet_page_shows_a_lockout_as_its_presence_arrives(
    user: User, board, sign_in
) -> None:
    points = [{"name": "level", "type": "float32", "unit": "m", "access": "r"}]
    tank = {"name": "tank1", "profile": "tank", "points": points}
    _publish(board, "skid-a", [tank])
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("plant-x/skid-a/tank1 (tank)")
    await user.should_not_see(marker="device-lockout")
    lockout = {"by": "bob", "reason": "guard open", "at": "2026-12-07T06:00:00+00:00"}
    presence = Presence(
        site="plant-x", agent="skid-a", state="online", devices=[{**tank, "lockout": lockout}]
    )
    _publish(board, "skid-a", presence.devices)
    board.change_feed.on_message(presence)  # as the event consumer tells it, once applied
    await user.should_see(marker="device-lockout", content="guard open", retries=LIVE)
    await user.should_see("plant-x/skid-a/tank1 (tank) LOCKED OUT")
    _publish(board, "skid-a", [tank])  # unlocked at the agent
    board.change_feed.on_message(Presence(site="plant-x", agent="skid-a", state="online"))
    await user.should_not_see(marker="device-lockout", retries=LIVE)


async def test_fleet_page_shows_whether_a_device_answers_its_agent(
    user: User, board, sign_in
) -> None:
    points = [{"name": "level", "type": "float32", "unit": "m", "access": "r"}]
    ok = {"state": "ok", "since": "2026-12-07T05:00:00+00:00", "error": ""}
    tank = {"name": "tank1", "profile": "tank", "points": points, "link": ok}
    _publish(board, "skid-a", [tank])
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see(
        marker="device-link", content="Answering its agent since 2026-12-07 05:00"
    )
    down = {"state": "down", "since": "2026-12-07T06:00:00+00:00", "error": "no answer in time"}
    presence = Presence(
        site="plant-x", agent="skid-a", state="online", devices=[{**tank, "link": down}]
    )
    _publish(board, "skid-a", presence.devices)
    board.change_feed.on_message(presence)
    await user.should_see(marker="device-link", content="no answer in time", retries=LIVE)
    await user.should_see("plant-x/skid-a/tank1 (tank) NOT ANSWERING")


async def test_overview_counts_devices_not_answering_or_locked_out(
    user: User, board, sign_in
) -> None:
    points = [{"name": "level", "type": "float32", "unit": "m", "access": "r"}]
    down = {"state": "down", "since": "2026-12-07T06:00:00+00:00", "error": "no answer in time"}
    tank = {"name": "tank1", "profile": "tank", "points": points}
    _publish(board, "skid-a", [tank])
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see(marker="overview-devices", content="0 not answering, 0 locked out")
    lockout = {"by": "alice", "reason": "seal replacement", "at": "2026-12-07T06:00:00+00:00"}
    pump = {"name": "pump1", "profile": "pump", "points": [], "lockout": lockout}
    presence = Presence(
        site="plant-x", agent="skid-a", state="online", devices=[{**tank, "link": down}, pump]
    )
    _publish(board, "skid-a", presence.devices)
    board.change_feed.on_message(presence)
    await user.should_see(
        marker="overview-devices", content="1 not answering, 1 locked out", retries=LIVE
    )


async def test_fleet_page_shows_a_gateways_heartbeat_when_it_says_something_new(
    user: User, board, sign_in
) -> None:
    from tme.controller.event_apply import apply_presence
    from tme.protocol import GatewayStatus

    def beat(mqtt_connected: bool) -> Presence:
        status = GatewayStatus(heartbeat_s=30, mqtt_connected=mqtt_connected, consuming=True)
        return Presence(site="plant-x", agent="gw", role="gateway", state="online", status=status)

    def arrives(presence: Presence) -> None:  # applied, then told, as the event consumer does
        with Session(board.engine) as session:
            apply_presence(session, presence)
            session.commit()
        board.change_feed.on_message(presence)

    arrives(beat(True))
    changes_before = len(board.change_feed.agents_after(0))
    arrives(beat(True))  # the same again: no change for the feed's readers
    assert len(board.change_feed.agents_after(0)) == changes_before
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see(marker="agent-status", content="MQTT up")
    arrives(beat(False))  # its broker went away: the next heartbeat says so at once
    await user.should_see(marker="agent-status", content="MQTT DOWN", retries=LIVE)


async def test_check_asks_the_agent_and_opens_the_checks_run(
    user: User, board, sign_in, monkeypatch
) -> None:
    """As POST /api/v1/tasks/{id}/check: a task `check <name>` starts, its run's page opens,
    and the task checked keeps its own state; a task of no device has no Check."""
    task_id = _task(board)
    other = _task(board, name="log only", op="external", target=None, params={})
    opened: list[str] = []
    monkeypatch.setattr(user.navigate, "to", opened.append)
    sign_in(user, "operator")
    await user.open("/tasks")
    await user.should_not_see(marker=f"check-{other}")
    user.find(marker=f"check-{task_id}").click()
    with Session(board.engine) as session:
        check = session.exec(select(Task).where(Task.op == "device.check")).one()
        assert check.name == "check read tank level"
        assert check.params == {"op": "modbus.read", "params": {"point": "level"}}
    assert opened == [f"/runs/{check.latest_run_id}"]


async def test_a_task_page_has_check_for_an_operator_and_not_for_a_viewer(
    user: User, board, sign_in, monkeypatch
) -> None:
    task_id = _task(board)
    opened: list[str] = []
    monkeypatch.setattr(user.navigate, "to", opened.append)
    sign_in(user, "viewer")
    await user.open(f"/tasks/{task_id}")
    await user.should_see("Definition")
    await user.should_not_see(marker=f"check-{task_id}")
    sign_in(user, "operator")
    await user.open(f"/tasks/{task_id}")
    user.find(marker=f"check-{task_id}").click()
    with Session(board.engine) as session:
        check = session.exec(select(Task).where(Task.op == "device.check")).one()
    assert opened == [f"/runs/{check.latest_run_id}"]


async def test_a_paused_task_says_so_in_the_list(user: User, board, sign_in) -> None:
    paused = _task(board, name="paused one")
    running = _task(board, name="running one")
    with Session(board.engine) as session:
        from tme.controller.services.policies import get_policy

        get_policy(session, session.get(Task, paused)).paused = True  # type: ignore[arg-type]
        session.commit()
    sign_in(user, "viewer")
    await user.open("/tasks")
    await user.should_see(marker=f"paused-{paused}")
    await user.should_not_see(marker=f"paused-{running}")


async def test_run_page_says_how_long_the_run_took_against_its_usual(
    user: User, board, sign_in
) -> None:
    task_id = noop_task(board.engine, "close valve")
    for _ in range(5):
        run_taking(board.engine, task_id, 2.0)
    slow = run_taking(board.engine, task_id, 12.0)
    sign_in(user, "viewer")
    await user.open(f"/runs/{slow}")
    await user.should_see(
        marker="run-duration",
        content="took 12.0 s; usual 2.0 s (median of the last 5 succeeded runs), 6.0x: slow",
    )
