"""A button's click: the viewer's session and permission checked again, then the action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import ui

from tme.errors import TMEError
from tme.ui.session import Viewer
from tme.ui.text import said


def guarded(
    viewer: Viewer,
    permission: str,
    site: str | None,
    action: Callable[..., Any],
    *args: Any,
    then: Callable[[Any], None] | None = None,
) -> Callable[[], None]:
    """A click handler running `action(principal, *args)`; `then` gets what it returned.

    A refusal (an ended session, a lost permission, a conflict the service names)
    is shown to the viewer instead; nothing else happens then.
    """

    def click() -> None:
        principal = viewer.still(permission, site)
        if principal is None:
            ui.notify("your session ended or no longer allows this", type="negative")
            return
        try:
            outcome = action(principal, *args)
        except TMEError as exc:
            ui.notify(said(exc.message), type="warning")
            return
        if then is not None:
            then(outcome)
        else:
            ui.notify(said(outcome) if isinstance(outcome, str) else "done", type="positive")

    return click


def confirm_button(label: str, question: str, action: Callable[[], None], mark: str) -> ui.button:
    """A `label` button (flat, red) that asks `question` first: its dialog's button of the
    same label runs `action`, "Back" does nothing. Marked `mark`, its dialog's button
    `confirm-<mark>`."""

    def ask() -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(question)

            def confirmed() -> None:
                dialog.close()
                action()

            with ui.row():
                ui.button("Back", on_click=dialog.close).props("flat")
                ui.button(label, color="negative", on_click=confirmed).mark(f"confirm-{mark}")
        dialog.open()

    return ui.button(label, on_click=ask).props("flat color=negative").mark(mark)
