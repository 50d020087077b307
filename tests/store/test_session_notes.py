"""Objects noted with `remember_new` are found without a flush within their
transaction, and never after it rolled back."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.store.db import find, noted, remember_new
from tme.controller.store.workflow_models import TaskPolicy


def test_a_noted_object_is_found_until_its_transaction_ends(engine: Engine) -> None:
    with Session(engine) as session:
        policy = TaskPolicy(task_id=424242)
        session.add(policy)
        remember_new(session, 424242, policy)
        assert noted(session, TaskPolicy, 424242) is policy
        assert find(session, TaskPolicy, 424242) is policy
        session.rollback()  # it was never stored: nothing may find it now
        assert noted(session, TaskPolicy, 424242) is None
        assert find(session, TaskPolicy, 424242) is None
        again = TaskPolicy(task_id=424243)
        remember_new(session, 424243, again)  # a later transaction notes afresh
        assert noted(session, TaskPolicy, 424243) is again
