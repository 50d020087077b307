"""An email quotes a task's name and an agent's reason as they read: one stored before
names refused it ("pump 2 stop" with a right-to-left override, a line break) shows its
escapes, and its subject is still one line the email can be sent with."""

from __future__ import annotations

from tme.controller.notifications.rules import subject_and_text

RLO = "\u202e"


def test_an_email_quotes_stored_and_agent_text_as_its_escapes() -> None:
    run = {
        "task_id": 7, "task_name": f"pump 2 {RLO}pots\nline", "to_state": "failed",
        "at": "2026-12-07T03:17:00Z", "reason": f"agent: {RLO}kO\x1b[2J",
        "site": "plant-1", "agent": "skid-a", "device": "pump1", "run_id": "r-1",
    }  # fmt: skip
    subject, text = subject_and_text({"event": "failed", "run": run})
    assert subject == "[TME] pump 2 \\u202epots\\x0aline failed"
    assert "Reason: agent: \\u202ekO\\x1b[2J\n" in text
    assert RLO not in text and "\x1b" not in text
    assert "Task 7 (pump 2 \\u202epots\nline) failed at" in text  # the text keeps its lines
