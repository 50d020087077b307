"""Text an operator reads (a task's or a rollout's name and description, who a task is
for, a notification rule's name, a device stop's reason) refuses the bidirectional
controls and invisible characters that make it read as other text: "pump 2 stop" with a
right-to-left override showed reversed on the dashboard and in `tme task list`. A 422
names the field and nothing is stored; a description keeps its line breaks and tabs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from api_helpers import assert_error, assert_refused_alone
from fastapi.testclient import TestClient
from rollout_fleet import speed

RULE = {"name": "r", "channel": "webhook", "target": "https://hooks.example/x"}

REFUSED = {
    "task name, RLO": ("POST", "/api/v1/tasks", {"name": "pump 2 \u202epots"}, "name", "202E"),
    "task name, the seed's create": (
        "POST", "/tasks/create", {"name": "pump\u200b2"}, "name", "200B",
    ),
    "task description": (
        "POST", "/api/v1/tasks", {"name": "x", "description": "stop \u202dit"},
        "description", "202D",
    ),
    "description on update": (
        "PATCH", "/api/v1/tasks/{id}", {"description": "a\u2066b\u2069"}, "description", "2066",
    ),
    "description on the seed's PUT": (
        "PUT", "/task/{id}/", {"description": "\ufeffnote"}, "description", "FEFF",
    ),
    "a lone carriage return in a description": (
        "PATCH", "/api/v1/tasks/{id}", {"description": "safe\rdanger"}, "description", "000D",
    ),
    "a batch item's description": (
        "POST", "/api/v1/tasks/batch", {"tasks": [{"name": "x", "description": "\u200fy"}]},
        "tasks.0.description", "200F",
    ),
    "assigned to": (
        "POST", "/api/v1/tasks", {"name": "x", "assigned_to": "an\u200dn"}, "assigned_to", "200D",
    ),
    "rollout name": ("POST", "/api/v1/rollouts", speed(name="speed\u202e"), "name", "202E"),
    "rollout description": (
        "POST", "/api/v1/rollouts/preview", speed(description="ok\u2067"), "description", "2067",
    ),
    "rollout profile": (
        "POST", "/api/v1/rollouts",
        speed(match={"site": "plant-1", "profile": "pu\u200cmp"}), "match.profile", "200C",
    ),
    "notification rule name": (
        "POST", "/api/v1/notifications/rules", {**RULE, "name": "on \u202bfail"}, "name", "202B",
    ),
    "device stop reason": (
        "POST", "/api/v1/devices/pump1/stop", {"reason": "leak\u202a"}, "reason", "202A",
    ),
    "device resume reason": (
        "POST", "/api/v1/devices/pump1/resume", {"reason": "fixed\u200e"}, "reason", "200E",
    ),
    "a shell command": (
        "POST", "/api/v1/tasks", {"name": "x", "op": "shell", "cmd": "ls #\u202e; rm -rf /"},
        "cmd", "202E",
    ),
    "a shell command changed": ("PATCH", "/api/v1/tasks/{id}", {"cmd": "ls\u200b"}, "cmd", "200B"),
    "a stop reason is one line": (
        "POST", "/api/v1/devices/pump1/stop", {"reason": "leak\nat seal"}, "reason", "000A",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "code"), REFUSED.values(), ids=list(REFUSED)
)
def test_an_invisible_or_bidirectional_character_is_refused_naming_the_field(
    test_client: TestClient,
    counts: Callable[[], dict[str, int]],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    code: str,
) -> None:
    kept = {"name": "kept", "description": "as it was"}
    task = test_client.post("/api/v1/tasks", json=kept).json()
    before = counts()
    answer = test_client.request(method, path.format(id=task["id"]), json=body)
    assert_refused_alone(answer, field, f"character U+{code}", counts, before)
    shown = test_client.get(f"/api/v1/tasks/{task['id']}").json()
    assert (shown["name"], shown["description"]) == (kept["name"], kept["description"])
    assert test_client.get("/api/v1/rollouts").json() == []
    assert test_client.get("/api/v1/notifications/rules").json() == []


def test_a_description_keeps_its_line_breaks_and_tabs(test_client: TestClient) -> None:
    text = "step 1:\tvent\r\nstep 2:\tfill — étape 2 ✓\n"
    made = test_client.post("/api/v1/tasks", json={"name": "réservoir 2", "description": text})
    assert made.status_code == 201, made.text
    assert made.json()["description"] == text.strip()


def test_a_description_keeps_the_joiners_its_script_or_emoji_are_written_with(
    test_client: TestClient,
) -> None:
    """Persian writes words with the zero-width non-joiner, emoji sequences join with the
    zero-width joiner: a description keeps both, where a name refuses them."""
    text = "شیر‌آلات مخزن 2 — بازرسی 👩‍🔧"
    made = test_client.post("/api/v1/tasks", json={"name": "tank 2", "description": text})
    assert made.status_code == 201, made.text
    assert made.json()["description"] == text
    named = test_client.post("/api/v1/tasks", json={"name": "tank\u200c2"})
    assert_error(named, 422, "name", "character U+200C")
