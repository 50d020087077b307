"""new_row: a new row's INSERT parameters hold what building its model would hold."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import SQLModel

from tme.controller.services.launch import link_values, new_link
from tme.controller.services.task_start import _columns
from tme.controller.store.models import IdempotencyKey, Outbox, Task, utcnow
from tme.controller.store.rows import new_row
from tme.controller.store.workflow_models import RunLink

NOW = utcnow()


@pytest.mark.parametrize(
    ("model", "values"),
    [
        (Outbox, {"run_id": "r" * 36, "site": "s", "body": "{}", "created_at": NOW}),
        (IdempotencyKey, {"key": "k", "request_hash": "h", "task_id": 7, "created_at": NOW}),
        (RunLink, link_values("r" * 36, NOW, cause="created", deadline_s=30)),
        (Task, {"name": "t", "op": "noop", "created_at": NOW, "updated_at": NOW}),
    ],
)
def test_new_row_holds_what_the_model_would(model: type[SQLModel], values: dict[str, Any]) -> None:
    assert new_row(model, **values) == _columns(model(**values))


def test_a_link_row_is_the_link_new_link_builds() -> None:
    row = new_row(RunLink, **link_values("r" * 36, NOW, cause="retry", first_run_id="f"))
    assert row == _columns(new_link("r" * 36, NOW, cause="retry", first_run_id="f"))
    assert row["deadline_at"] is None and row["workflow_id"] == "r" * 36


def test_factories_run_per_row_and_mutable_defaults_are_not_shared() -> None:
    first = new_row(Task, name="a", op="noop")
    second = new_row(Task, name="b", op="noop")
    assert abs(first["created_at"] - utcnow()) < timedelta(seconds=5)
    first["params"]["touched"] = True
    assert second["params"] == {} and new_row(Task, name="c", op="noop")["params"] == {}


def test_an_unknown_column_or_a_missing_value_is_refused() -> None:
    with pytest.raises(TypeError, match="no column"):
        new_row(Outbox, run_id="r", site="s", body="", colour="red")
    with pytest.raises(TypeError, match=r"needs \['body'\]"):
        new_row(Outbox, run_id="r", site="s")
