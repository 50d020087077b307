"""A PostgreSQL server that takes the connection and never answers is given up on."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy.exc import OperationalError

from tme.controller.store import db


def test_a_server_that_takes_the_connection_and_never_answers_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Connecting fails after CONNECT_TIMEOUT_S (the API's 503, the consumer's hold).
    It waited for ever: with the server hung, every request, the event consumer and
    the controller's stop with them."""
    monkeypatch.setattr(db, "CONNECT_TIMEOUT_S", 2)  # libpq's least
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel takes connections; nothing ever answers them
        port = silent.getsockname()[1]
        engine = db.make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/tme")
        errors: list[BaseException] = []

        def connect() -> None:
            try:
                with engine.connect():
                    pass
            except BaseException as exc:
                errors.append(exc)

        started = time.monotonic()
        attempt = threading.Thread(target=connect, daemon=True)
        attempt.start()
        attempt.join(15)
        assert not attempt.is_alive(), "still connecting after 15 s"
        assert len(errors) == 1 and isinstance(errors[0], OperationalError), errors
        assert time.monotonic() - started < 10
        engine.dispose()
