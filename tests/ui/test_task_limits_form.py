"""The dashboard's New task form keeps to tasks.max_timeout_s, as the API does."""

from __future__ import annotations

from typing import Any

import pytest
from nicegui.testing import User
from sqlmodel import Session, select

from tme.config import Settings
from tme.controller.store.models import Task


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    return Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        tasks={"max_timeout_s": 600},
    )


async def test_create_form_refuses_a_timeout_over_the_controllers_limit(
    user: User, board: Any, sign_in: Any
) -> None:
    sign_in(user, "operator")
    await user.open("/tasks")
    user.find("New task").click()
    user.find(marker="task-name").type("slow read")
    user.find(marker="task-site").type("plant-x")
    user.find(marker="task-agent").type("skid-a")
    user.find(marker="task-device").type("tank1")
    user.find(marker="task-params").clear().type('{"point": "level"}')
    user.find(marker="task-timeout_s").type("3600")
    user.find("Create").click()
    await user.should_see("timeout_s: at most 600 s (tasks.max_timeout_s)")
    with Session(board.engine) as session:
        assert session.exec(select(Task)).all() == []
