"""The Rollouts pages: the list of the viewer's sites' rollouts, one rollout's devices
with their runs' states, and its Cancel button for roles that control runs (after
asking; audited, as the API's cancel)."""

from __future__ import annotations

import threading
from typing import Any

from nicegui.testing import User
from rollout_fleet import plant, speed
from sqlmodel import Session

from tme.controller.run_ready import RunReady
from tme.controller.services.audit import AuditFilters, query
from tme.controller.services.rollouts import create_rollout
from tme.controller.store.db import session_scope
from tme.controller.store.rollout_models import Rollout
from tme.rollout_schemas import RolloutCreate


def _rollout(board: Any, site: str = "plant-1", **fields: Any) -> int:
    plant(board.engine, site)
    body = RolloutCreate(**speed(match={"site": site, "profile": "pump"}, **fields))
    with session_scope(board.engine) as session:
        hook = RunReady(board.settings, threading.Event())  # its runs queued, as live
        made = create_rollout(session, body, "ana", hook)
        session.commit()
        return made.id or 0


async def test_the_list_shows_the_viewers_sites_rollouts(user: User, board, sign_in) -> None:
    ours = _rollout(board, name="pump speed")
    theirs = _rollout(board, "plant-2", name="other plant")
    sign_in(user, "viewer", "plant-1")
    await user.open("/rollouts")
    await user.should_see(f"{ours}: pump speed")
    await user.should_see("modbus.write at plant-1: 3 not_started, 1 queued")
    await user.should_not_see(marker=f"rollout-{theirs}")
    await user.open(f"/rollouts/{theirs}")
    await user.should_see(f"There is no rollout {theirs}.")


async def test_one_rollout_shows_its_devices_and_a_viewer_has_no_cancel(
    user: User, board, sign_in
) -> None:
    rollout_id = _rollout(board, window=2)
    sign_in(user, "viewer")
    await user.open(f"/rollouts/{rollout_id}")
    await user.should_see(f"Rollout {rollout_id}: pump speed")
    await user.should_see("pump1 (skid-a)")
    await user.should_see("pump4 (skid-b)")
    await user.should_see("2 not_started, 2 queued; by ana")
    await user.should_not_see(marker="cancel-rollout")


async def test_an_operator_cancels_the_rollout_after_confirming(user: User, board, sign_in) -> None:
    rollout_id = _rollout(board)
    sign_in(user, "operator")
    await user.open(f"/rollouts/{rollout_id}")
    user.find(marker="cancel-rollout").click()
    await user.should_see(f"Cancel rollout {rollout_id} (pump speed)?")
    with Session(board.engine) as session:
        assert session.get_one(Rollout, rollout_id).state == "going"  # nothing before the yes
    user.find(marker="confirm-cancel-rollout").click()
    await user.should_see(f"canceled rollout {rollout_id}: 1 canceled, 3 skipped")
    with Session(board.engine) as session:
        assert session.get_one(Rollout, rollout_id).state == "canceled"
        entries = query(session, AuditFilters(action="run.control:cancel_rollout"), limit=5)
    assert [(e.target, e.outcome) for e in entries] == [(f"rollout {rollout_id}", "ok")]
    await user.should_not_see(marker="cancel-rollout")
