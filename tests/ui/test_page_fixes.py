"""Dashboard answers a person can act on: a refused delete says why, a cancel says what
happened, the CSV export leaves the dashboard's mount, new tasks are announced, read
values show one a line and run counts keep their state's colour."""

from __future__ import annotations

from typing import Any

import pytest
from nicegui import ui
from nicegui.testing import User
from sqlmodel import Session, select
from test_live_pages import LIVE, _latest_run, _move, _succeed, _task

from tme.controller.store.models import Run, Task
from tme.ui.theme import STATE_COLORS

MOUNT = "/ui"  # where the controller mounts the dashboard (the tests run it unmounted)


def _reloads(user: User, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    reloaded: list[bool] = []
    monkeypatch.setattr(user.navigate, "reload", lambda: reloaded.append(True))
    return reloaded


async def test_a_refused_delete_stays_on_screen(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = _task(board)
    _move(board, _latest_run(board, task_id), "queued", "dispatched", "running")
    sign_in(user, "operator")
    await user.open("/tasks")
    reloaded = _reloads(user, monkeypatch)
    user.find("Delete").click()
    user.find(marker="confirm-delete").click()
    await user.should_see("in flight")  # the service's reason, as the API's 409 gives it
    assert reloaded == []  # a reload would take the message away with the page
    with Session(board.engine) as session:
        assert session.get(Task, task_id) is not None


async def test_a_delete_that_succeeds_reloads_the_list(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = _task(board)
    sign_in(user, "operator")
    await user.open("/tasks")
    reloaded = _reloads(user, monkeypatch)
    user.find("Delete").click()
    user.find(marker="confirm-delete").click()
    assert reloaded == [True]
    with Session(board.engine) as session:
        assert session.get(Task, task_id) is None


async def test_cancel_of_an_external_run_cancels_it_at_once(user: User, board, sign_in) -> None:
    task_id = _task(board, op="external", target=None, params={})
    run_id = _latest_run(board, task_id)
    _move(board, run_id, "running")  # a person reported it started
    sign_in(user, "operator")
    await user.open(f"/runs/{run_id}")
    user.find("Cancel run").click()
    await user.should_see("no agent to ask")
    await user.should_not_see("asked the agent")
    with Session(board.engine) as session:
        run = session.get(Run, run_id)
        assert run is not None and run.state == "canceled"


def _browser_href(element: Any) -> str:
    """Where a click leads once mounted: NiceGUI's link.js puts the mount path before a
    ui.link target starting with "/"; a plain <a> keeps its href."""
    target = str(element.props.get("href", ""))
    if isinstance(element, ui.link) and target.startswith("/"):
        return MOUNT + target
    return target


async def test_export_csv_leads_to_the_api_not_under_the_dashboard(
    user: User, board, sign_in
) -> None:
    sign_in(user, "viewer")
    await user.open("/reports?days=30&group_by=site")
    await user.should_see("Export CSV")
    link = user.find(marker="export-csv").elements.pop()
    assert link.tag == "a"
    assert _browser_href(link) == "/api/v1/reports/summary.csv?days=30&group_by=site"


async def test_the_tasks_list_announces_tasks_made_after_it_opened(
    user: User, board, sign_in
) -> None:
    _task(board, name="first pump")
    sign_in(user, "viewer")
    await user.open("/tasks")
    await user.should_see("first pump")
    await user.should_not_see(marker="new-tasks")
    _task(board, name="second pump")
    await user.should_see("1 new task since this page opened", retries=LIVE)
    await user.should_see("Reload")


async def test_a_new_task_outside_the_filter_is_not_announced(user: User, board, sign_in) -> None:
    _task(board, name="first pump")
    sign_in(user, "viewer")
    await user.open("/tasks?q=pump")
    _task(board, name="conveyor belt")
    _task(board, name="third pump")
    await user.should_see(marker="new-tasks", retries=LIVE)
    banner = user.find(marker="new-tasks").elements.pop()
    assert banner.text == "1 new task since this page opened"


async def test_the_run_page_shows_each_read_value_with_its_unit(user: User, board, sign_in) -> None:
    run_id = _latest_run(board, _task(board))
    result = {"values": {"level": {"value": 41.25, "unit": "%"}, "inflow": {"value": 3}}}
    _succeed(board, run_id, result)
    sign_in(user, "viewer")
    await user.open(f"/runs/{run_id}")
    await user.should_see("level: 41.25 %")
    await user.should_see("inflow: 3")
    await user.should_not_see("values:")  # not the result's raw dict


async def test_runs_by_state_keep_their_states_colours(user: User, board, sign_in) -> None:
    _succeed(board, _latest_run(board, _task(board)))
    _move(board, _latest_run(board, _task(board)), "canceled")
    sign_in(user, "viewer")
    await user.open("/")
    await user.should_see("succeeded: 1")
    chips = {chip.text: chip.props.get("color") for chip in user.find(ui.badge).elements}
    assert chips["succeeded: 1"] == STATE_COLORS["succeeded"]
    assert chips["canceled: 1"] == STATE_COLORS["canceled"]
    assert STATE_COLORS["succeeded"] != STATE_COLORS["canceled"]


def _publish_pump(board: Any, stopped: dict | None = None, **said: Any) -> None:
    from pathlib import Path

    from tme.controller.event_apply import apply_presence
    from tme.drivers.profile import load_profile
    from tme.protocol import Presence

    profile = Path(__file__).resolve().parents[2] / "configs" / "profiles" / "pump.yaml"
    pump = {"name": "pump1", "profile": "pump", "points": load_profile(profile).public_points()}
    if stopped is not None:
        pump["stopped"] = stopped  # as its agent says it after a stop
    pump.update(said)
    with Session(board.engine) as session:
        presence = Presence(site="plant-x", agent="skid-a", state="online", devices=[pump])
        apply_presence(session, presence)
        session.commit()


async def test_an_operator_stops_a_device_from_the_fleet_page(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As POST /api/v1/devices/{device}/stop: its unfinished runs are canceled and a
    device.stop run starts, whose page opens; a reason is asked for first."""
    _publish_pump(board)
    speed = {"point": "speed_setpoint", "value": 1500}
    waiting = _task(board, target={"site": "plant-x", "agent": "skid-a", "device": "pump1"},
                    op="modbus.write", params=speed)  # fmt: skip
    opened: list[str] = []
    monkeypatch.setattr(user.navigate, "to", opened.append)
    sign_in(user, "operator")
    await user.open("/fleet")
    await user.should_see("Stop pump1")
    user.find(marker="stop-device").click()
    user.find(marker="confirm-stop").click()
    await user.should_see("say why")  # nothing stopped without a reason
    user.find(marker="stop-reason").type("leak at the seal")
    user.find(marker="confirm-stop").click()
    with Session(board.engine) as session:
        stop = session.exec(select(Task).where(Task.op == "device.stop")).one()
        assert stop.device == "pump1"
        assert stop.params == {"reason": "leak at the seal", "by": "operator-0"}
        assert session.get(Task, waiting).status == "canceled"  # type: ignore[union-attr]
    assert opened == [f"/runs/{stop.latest_run_id}"]


async def test_a_viewer_has_no_stop_button(user: User, board, sign_in) -> None:
    _publish_pump(board)
    sign_in(user, "viewer")
    await user.open("/fleet")
    await user.should_see("pump1")
    await user.should_not_see("Stop pump1")
    await user.should_not_see("Stop site plant-x")


def _publish_conveyor_offline(board: Any) -> None:
    """A conveyor on agent line-b of plant-x, which then went offline, and a tank (no safe
    value) on agent skid-t."""
    from pathlib import Path

    from tme.controller.event_apply import apply_presence
    from tme.drivers.profile import load_profile
    from tme.protocol import Presence

    profiles = Path(__file__).resolve().parents[2] / "configs" / "profiles"
    with Session(board.engine) as session:
        for agent, device, profile in (
            ("line-b", "conveyor1", "conveyor"),
            ("skid-t", "tank1", "tank"),
        ):
            points = load_profile(profiles / f"{profile}.yaml").public_points()
            described = [{"name": device, "profile": profile, "points": points}]
            apply_presence(
                session, Presence(site="plant-x", agent=agent, state="online", devices=described)
            )
        apply_presence(session, Presence(site="plant-x", agent="line-b", state="offline"))
        session.commit()


async def test_an_operator_stops_a_whole_site_from_the_fleet_page(
    user: User, board, sign_in
) -> None:
    """As POST /api/v1/sites/{site}/stop: each device with safe values gets its stop, its
    unfinished runs canceled, after a reason is asked for; the page says what it stopped,
    what it left alone, and that a stop waits for an agent offline."""
    _publish_pump(board)
    _publish_conveyor_offline(board)
    speed = {"point": "speed_setpoint", "value": 1500}
    waiting = _task(board, target={"site": "plant-x", "agent": "skid-a", "device": "pump1"},
                    op="modbus.write", params=speed)  # fmt: skip
    sign_in(user, "operator")
    await user.open("/fleet")
    await user.should_see("Stop site plant-x")
    user.find(marker="stop-site").click()
    user.find(marker="confirm-stop-site").click()
    await user.should_see("say why")  # nothing stopped without a reason
    with Session(board.engine) as session:
        assert session.exec(select(Task).where(Task.op == "device.stop")).all() == []
    user.find(marker="stop-site-reason").type("flood in hall 2")
    user.find(marker="confirm-stop-site").click()
    with Session(board.engine) as session:
        stops = session.exec(select(Task).where(Task.op == "device.stop")).all()
        assert sorted(t.device or "" for t in stops) == ["conveyor1", "pump1"]
        assert {t.params["reason"] for t in stops} == {"flood in hall 2"}
        assert session.get(Task, waiting).status == "canceled"  # type: ignore[union-attr]
    assert user.notify.contains(
        "stopping 2 device(s) of plant-x: line-b/conveyor1, skid-a/pump1;"
        " left alone (no safe value): skid-t/tank1"
    )
    assert user.notify.contains("agent offline: line-b/conveyor1")


async def test_a_stopped_device_says_so_and_offers_resume(
    user: User, board, sign_in, monkeypatch: pytest.MonkeyPatch
) -> None:
    stopped = {"by": "alice", "reason": "leak at the seal", "at": "2026-12-07T06:00:00+00:00"}
    _publish_pump(board, stopped)
    monkeypatch.setattr(user.navigate, "to", lambda _to: None)
    sign_in(user, "operator")
    await user.open("/fleet")
    await user.should_see("Stopped by alice at 2026-12-07 06:00:00 UTC: leak at the seal")
    user.find(marker="resume-device").click()
    user.find(marker="resume-reason").type("seal replaced")
    user.find(marker="confirm-resume").click()
    with Session(board.engine) as session:
        resume = session.exec(select(Task).where(Task.op == "device.resume")).one()
        assert resume.params == {"reason": "seal replaced", "by": "operator-0"}


async def test_a_device_stopped_by_its_agent_on_link_loss_says_why_and_offers_resume(
    user: User, board, sign_in
) -> None:
    stopped = {
        "by": "agent skid-a (link loss)",
        "reason": "link to the controller lost for 300 s (the site gateway is offline)",
        "at": "2026-12-07T06:00:00+00:00",
    }
    _publish_pump(board, stopped, stop_on_link_loss_s=300)
    sign_in(user, "operator")
    await user.open("/fleet")
    await user.should_see(
        "Stopped by agent skid-a (link loss) at 2026-12-07 06:00:00 UTC: link to the"
        " controller lost for 300 s (the site gateway is offline)"
    )
    await user.should_see(
        "Its agent stops it (its safe values, until it is resumed) after 300 s without the"
        " link to the controller."
    )
    await user.should_see(marker="resume-device")


async def test_a_device_whose_agent_the_controller_lost_says_when_the_agent_stops_it(
    user: User, board, sign_in
) -> None:
    from datetime import UTC, datetime, timedelta

    from tme.controller.event_apply import apply_presence
    from tme.protocol import Presence

    _publish_pump(board, stop_on_link_loss_s=300)
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # after the online
    offline = Presence(site="plant-x", agent="skid-a", state="offline", at=at)
    with Session(board.engine) as session:
        apply_presence(session, offline)
        session.commit()
    sign_in(user, "operator")
    await user.open("/fleet")
    stops = at + timedelta(seconds=300)
    await user.should_see(
        f"Link lost: agent skid-a offline since {at:%Y-%m-%d %H:%M:%S} UTC: its agent, if"
        f" running, stops it at about {stops:%H:%M:%S} UTC unless the link returns first."
    )


async def test_the_resume_button_shows_only_while_the_device_is_stopped(
    user: User, board, sign_in
) -> None:
    _publish_pump(board)
    sign_in(user, "operator")
    await user.open("/fleet")
    await user.should_see("Stop pump1")
    await user.should_not_see(marker="resume-device")  # hidden: it is not stopped
