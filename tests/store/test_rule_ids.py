"""A notification rule id beyond what the column holds names no rule: 404 on either
database (PostgreSQL refused the lookup itself, which answered 422)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tme.controller.api.change_commit import ChangeCommit
from tme.controller.notifications_api import delete_rule
from tme.controller.services.roles import Principal, Role
from tme.errors import NotFound


@pytest.mark.parametrize("rule_id", [2**31, 2**63 - 1])
def test_a_rule_id_beyond_the_column_is_not_found(engine: Engine, rule_id: int) -> None:
    admin = Principal(1, "admin", Role.admin, ("*",))
    with Session(engine) as session, pytest.raises(NotFound):
        delete_rule(rule_id, session, ChangeCommit(session, engine, None), admin)
