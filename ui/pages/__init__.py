"""Dashboard pages, one module each; `register_pages` declares them all."""

from __future__ import annotations


def register_pages() -> None:
    from tme.ui.pages import audit, fleet, login, overview, reports, run, task, tasks, workflow

    for module in (login, overview, tasks, task, run, workflow, fleet, reports, audit):
        module.register()
