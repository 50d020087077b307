"""A PostgreSQL server that takes the connection and never answers, or stops
answering mid-way, is given up on."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from tcp_relay import TcpRelay

from tme.config import Settings
from tme.controller.app import create_app
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


POSTGRESQL = ("127.0.0.1", 5432)


@pytest.mark.external_service
def test_a_query_on_a_link_that_stops_answering_fails_and_its_connection_is_dropped(
    postgres_url: str,
) -> None:
    """The link to PostgreSQL stops passing anything, mid-connection, nothing closed (a
    dead route, a host gone): a query fails within `tcp_timeout_s` and the pool drops
    its connection. It waited on TCP for ever, holding its thread (the event consumer's,
    a request's) and a pooled connection. The relay takes nothing more once its small
    buffer is full, so the query (with a large value, as a batch of events has) is left
    unacknowledged, as when packets are dropped."""
    relay = TcpRelay(POSTGRESQL, receive_buffer=4096)
    relay.open()
    engine = db.make_engine(_through(postgres_url, relay.port), tcp_timeout_s=2)
    errors: list[BaseException] = []
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            relay.pause()  # the link stops; the connection stays open at both ends

            def query() -> None:
                try:
                    connection.execute(text("SELECT length(:big)"), {"big": "x" * 4_000_000})
                except BaseException as exc:
                    errors.append(exc)

            stuck = threading.Thread(target=query, daemon=True)
            stuck.start()
            stuck.join(30)  # a generous bound; without the TCP settings, for ever
            if stuck.is_alive():
                relay.close()  # ends it, so the test fails now, not minutes later
                pytest.fail("the query still waited on a dead link after 30 s")
            assert len(errors) == 1 and isinstance(errors[0], OperationalError), errors
            assert connection.invalidated  # not handed out again
        relay.resume()  # the link is back: a new connection serves
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 2")).scalar() == 2
    finally:
        relay.close()  # ends a query still stuck (the test failed)
        engine.dispose()


@pytest.mark.external_service
def test_the_tcp_settings_reach_the_connections_socket_and_the_urls_own_win(
    postgres_url: str,
) -> None:
    """Keepalives find a silent server while a query waits for its answer (the case a
    test cannot stall without dropping packets): the kernel probes an idle link after
    a third of `tcp_timeout_s`, then every sixth, and gives up at `tcp_timeout_s`."""
    engine = db.make_engine(postgres_url, tcp_timeout_s=30)
    own = db.make_engine(postgres_url + "?keepalives_idle=60&tcp_user_timeout=90000")
    try:
        assert _tcp_options(engine) == {
            "keepalive": 1,
            "idle": 10,
            "interval": 5,
            "count": 3,
            "user_timeout_ms": 30_000,
        }
        assert _tcp_options(own) == {
            "keepalive": 1,
            "idle": 60,
            "interval": 5,
            "count": 3,
            "user_timeout_ms": 90_000,
        }
    finally:
        engine.dispose()
        own.dispose()


def _through(url: str, port: int) -> str:
    """`url` (a server on port 5432) reached through a relay on `port`."""
    assert ":5432/" in url
    return url.replace(":5432/", f":{port}/")


def _tcp_options(engine: Engine) -> dict[str, int]:
    """The TCP options of a pooled connection's socket, as the kernel holds them."""
    raw = engine.raw_connection()
    try:
        fd = raw.driver_connection.pgconn.socket  # type: ignore[union-attr]
        with socket.socket(fileno=os.dup(fd)) as sock:
            tcp = socket.IPPROTO_TCP
            return {
                "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle": sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
                "interval": sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
                "count": sock.getsockopt(tcp, socket.TCP_KEEPCNT),
                "user_timeout_ms": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
            }
    finally:
        raw.close()


@pytest.mark.external_service
def test_the_controller_takes_its_tcp_timeout_from_the_settings(
    postgres_database_url: str,
) -> None:
    ready = db.make_engine(postgres_database_url)
    db.upgrade(ready)
    ready.dispose()
    settings = Settings(
        database={"url": postgres_database_url, "tcp_timeout_s": 12}, broker={"url": "memory://"}
    )
    app = create_app(settings, runtime=False)
    with TestClient(app):
        assert _tcp_options(app.state.engine)["user_timeout_ms"] == 12_000
