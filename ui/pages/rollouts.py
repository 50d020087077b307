"""Rollouts: the list (newest first, of the viewer's sites) and one rollout's devices with
their runs' states, updated live, and its Cancel button for roles that control runs."""

from __future__ import annotations

import json
from collections.abc import Callable

from fastapi import Request
from nicegui import ui

from tme.controller.services.access import site_scope
from tme.controller.services.rollout_reads import list_rollouts, to_public
from tme.controller.store.rollout_models import Rollout
from tme.rollout_schemas import RolloutPublic
from tme.ui import actions, live
from tme.ui.context import dashboard
from tme.ui.control import confirm_button, guarded
from tme.ui.session import Viewer
from tme.ui.text import label, name, said
from tme.ui.theme import frame, href, sign_in_first, state_chip, utc_time

# A rollout's own states, in the colours of the run states they resemble.
ROLLOUT_CHIPS = {"going": "running", "done": "rejected", "aborted": "failed"}


def _counts(rollout: RolloutPublic) -> str:
    return ", ".join(f"{n} {state}" for state, n in rollout.counts.items())


def _rollout(rollout_id: int, viewer: Viewer) -> RolloutPublic | None:
    """The rollout with its devices, or None: no such rollout, or not the viewer's site."""
    with dashboard().session() as session:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None or not viewer.principal.sees_site(rollout.site):
            return None
        return to_public(session, rollout)


def _devices(rollout: RolloutPublic) -> None:
    with ui.column().classes("w-full gap-1").mark("rollout-devices"):
        for device in rollout.devices:
            with ui.row().classes("items-center gap-3"):
                state_chip(device.state)
                ui.label(f"{name(device.device)} ({name(device.agent)})")
                if device.task_id is not None:
                    ui.link(f"task {device.task_id}", href(f"/tasks/{device.task_id}"))
                if device.run_id:
                    ui.link(f"run {device.run_id[:8]}", href(f"/runs/{device.run_id}"))
                if device.reason and device.state not in ("succeeded", "not_started"):
                    label(device.reason).classes("text-sm text-grey-8")


def _cancel_button(viewer: Viewer, rollout: RolloutPublic, after: Callable[[str], None]) -> None:
    """Cancel the rollout, after asking (as POST /api/v1/rollouts/{id}/cancel); `after`
    gets the note to show."""
    cancel = guarded(
        viewer, "run.control", rollout.site, actions.cancel_rollout, rollout.id, then=after
    )

    question = (
        f"Cancel rollout {rollout.id} ({name(rollout.name)})? No further run starts, and its runs"
        " going are canceled."
    )
    confirm_button("Cancel rollout", question, cancel, "cancel-rollout")


def register() -> None:
    @ui.page("/rollouts")
    def rollouts_page(request: Request) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        with frame("Rollouts", viewer):
            with dashboard().session() as session:
                rollouts, _ = list_rollouts(session, site_scope(viewer.principal), limit=200)
            if not rollouts:
                ui.label("No rollouts yet: tme rollout create, or POST /api/v1/rollouts.")
                return
            for rollout in rollouts:
                with ui.row().classes("items-center gap-3").mark(f"rollout-{rollout.id}"):
                    state_chip(ROLLOUT_CHIPS.get(rollout.state, rollout.state), rollout.state)
                    ui.link(f"{rollout.id}: {name(rollout.name)}", href(f"/rollouts/{rollout.id}"))
                    ui.label(f"{rollout.op} at {name(rollout.site)}: {_counts(rollout)}").classes(
                        "text-sm"
                    )

    @ui.page("/rollouts/{rollout_id}")
    def rollout_page(request: Request, rollout_id: int) -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        rollout = _rollout(rollout_id, viewer)
        if rollout is None:
            with frame("Rollout not found", viewer):
                ui.label(f"There is no rollout {rollout_id}.")
            return
        with frame(f"Rollout {rollout.id}: {name(rollout.name)}", viewer):
            header = ui.column().classes("gap-1")
            devices = ui.column().classes("w-full")

            def show(rollout: RolloutPublic) -> None:
                header.clear()
                devices.clear()
                with header:
                    with ui.row().classes("items-center gap-3"):
                        state_chip(ROLLOUT_CHIPS.get(rollout.state, rollout.state), rollout.state)
                        label(rollout.reason).mark("rollout-reason")
                    ui.label(
                        f"{rollout.op} {json.dumps(rollout.params)} on {json.dumps(rollout.match)}"
                    )
                    ui.label(
                        f"window {rollout.window}; aborts at {rollout.abort.failed_percent:g}%"
                        f" of at least {rollout.abort.min_settled} settled runs not succeeding"
                    )
                    ui.label(f"{_counts(rollout)}; by {name(rollout.created_by)}, "
                             f"{utc_time(rollout.created_at)}")  # fmt: skip
                    for left in rollout.refused:
                        label(f"left out: {name(left.device)} ({name(left.agent)}): {left.refused}")
                    if rollout.state == "going" and viewer.can("run.control", rollout.site):
                        _cancel_button(viewer, rollout, canceled)
                with devices:
                    _devices(rollout)

            def canceled(note: str) -> None:
                ui.notify(said(note), type="positive")
                fresh = _rollout(rollout_id, viewer)
                if fresh is not None:
                    show(fresh)

            show(rollout)
            task_ids = {d.task_id for d in rollout.devices}

        def on_runs(changes: list[live.RunChange]) -> None:
            if any(change.task_id in task_ids for change in changes):
                fresh = _rollout(rollout_id, viewer)
                if fresh is not None:
                    show(fresh)

        live.run_changes.subscribe(on_runs)
