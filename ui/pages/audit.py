"""Audit (admin): the audit log, filterable by actor, action and outcome."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import Request
from nicegui import ui

from tme.controller.services.audit import AuditFilters, query
from tme.names import unknown_choice
from tme.ui import text
from tme.ui.context import dashboard
from tme.ui.theme import frame, sign_in_first, utc_time

OUTCOMES = ("ok", "failed", "refused")


def register() -> None:
    @ui.page("/audit")
    def audit_page(request: Request, actor: str = "", action: str = "", outcome: str = "") -> None:
        viewer = sign_in_first(request)
        if viewer is None:
            return
        with frame("Audit", viewer):
            if not viewer.can("audit.read"):
                ui.label("The audit log is for administrators.")
                return
            if not viewer.principal.all_sites:  # its rows name every site's tasks and users
                ui.label("The audit log covers every site: it is for administrators of all sites.")
                return
            # An outcome the log never records (a hand-edited ?outcome=) matches no row:
            # say so, as the API's 422 does, where the outcome list refused it with a 500.
            problem = None
            if outcome and outcome not in OUTCOMES:
                problem, outcome = unknown_choice("outcome", outcome, OUTCOMES), ""
            entries = []
            if problem is None:
                with dashboard().session() as session:
                    entries = query(
                        session,
                        AuditFilters(
                            actor=actor or None, action=action or None, outcome=outcome or None
                        ),
                        limit=200,
                    )
            with ui.row().classes("items-end gap-2"):
                actor_in = ui.input("Actor", value=actor).mark("filter-actor")
                action_in = ui.input("Action starts with", value=action).mark("filter-action")
                outcome_in = ui.select(["", *OUTCOMES], value=outcome, label="Outcome").classes(
                    "w-36"
                )

                def apply() -> None:
                    pairs = {
                        "actor": actor_in.value,
                        "action": action_in.value,
                        "outcome": outcome_in.value,
                    }
                    ui.navigate.to("/audit?" + urlencode({k: v for k, v in pairs.items() if v}))

                for field in (actor_in, action_in):  # Enter applies, as Filter does
                    field.on("keydown.enter", apply)
                ui.button("Filter", on_click=apply).props("outline")
            if problem is not None:
                text.label(f"outcome: {problem}").classes("text-negative").mark("filter-problem")
            rows = text.rows(
                {
                    "id": e.id,
                    "at": utc_time(e.at),
                    "actor": e.actor,
                    "action": e.action,
                    "target": e.target,
                    "outcome": e.outcome,
                }
                for e in entries
            )  # rows written before the audit log escaped them may hold them raw
            ui.table(rows=rows, row_key="id").classes("w-full")
