"""Dashboard pages, one module each; `register_pages` declares them all."""

from __future__ import annotations


def register_pages() -> None:
    from tme.ui.pages import (
        audit,
        fleet,
        login,
        overview,
        reports,
        rollouts,
        run,
        task,
        tasks,
        workflow,
    )

    pages = (login, overview, tasks, task, run, workflow, rollouts, fleet, reports, audit)
    for module in pages:
        module.register()
