"""What the database refuses is reported without the values that were sent."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from tme.controller.store.models import IdempotencyKey

SECRET = "TOP-SECRET-HMAC-KEY"


def test_a_refused_write_names_no_value_it_carried(engine: Engine) -> None:
    """Error texts are logged (the API's 409/422 handlers, the consumers): a secret in a
    refused row must not reach them."""
    with Session(engine) as session:
        session.add(IdempotencyKey(key="k", request_hash=SECRET, task_id=1))
        session.commit()
    with Session(engine) as session, pytest.raises(IntegrityError) as refused:
        session.add(IdempotencyKey(key="k", request_hash=SECRET, task_id=1))
        session.commit()
    text = str(refused.value)
    assert "hidden due to hide_parameters" in text
    assert SECRET not in text
