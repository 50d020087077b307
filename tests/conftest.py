"""Fixtures every test may use.

Tests marked `external_service` talk to real servers on localhost. Off CI they
skip when the server is absent; with CI=true a missing server fails the test.
"""

from __future__ import annotations

import gc
import os
import secrets
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ports import listening
from queue_ledger import LEDGER_DIR, QueueLedger, sweep
from sqlalchemy.engine import Engine
from waiting import wait_until

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

SERVICES = {
    "postgresql": ("127.0.0.1", 5432),
    "rabbitmq": ("127.0.0.1", 5672),
    "mosquitto": ("127.0.0.1", 1883),
}
POSTGRES_URL = os.environ.get(
    "TME_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
RABBITMQ_URL = os.environ.get("TME_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
MQTT_URL = os.environ.get("TME_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")


def require_service(name: str) -> None:
    """Skip (off CI) or fail (on CI) when a real server is not listening."""
    host, port = SERVICES[name]
    if listening(port, host, timeout_s=0.5):
        return
    message = f"{name} is not listening on {host}:{port}"
    if IN_CI:
        pytest.fail(message + " (CI=true: external services are required)")
    pytest.skip(message)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what exists once the tests are collected (the modules and the libraries
    they import) from every later garbage collection: the collector then looks only at
    what the tests make. A full collection otherwise walks every object of every module
    imported so far, 0.2 s and more in this suite, and NiceGUI's test reset runs two for
    each dashboard test. Garbage the tests make is collected as before."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def no_tme_log_handler_left() -> Iterator[None]:
    """Fail a test that leaves TME's log handler on the root logger, then remove it.

    `tme gateway`, `tme serve` and `tme demo` configure logging onto sys.stderr; run in
    process under typer's CliRunner that is the runner's stream, closed once the command
    returns. Every later log line of the session, from any thread (the scheduler of another
    test's app), then fails with "--- Logging error --- ValueError: I/O operation on closed
    file", printed onto whatever stderr is current: another CLI command's one-line error.
    A test running such a command stubs tme.logs.configure_logging (or resets logging)."""
    import logging

    root = logging.getLogger()
    level = root.level
    yield
    from tme.logs import TME_HANDLER, reset_logging

    left = [handler for handler in root.handlers if getattr(handler, TME_HANDLER, False)]
    if not left:
        return
    import structlog

    reset_logging()
    structlog.reset_defaults()
    root.setLevel(level)
    pytest.fail(
        f"the test left TME's log handlers on the root logger: {left} (a CLI command run in "
        "process configured logging; stub tme.logs.configure_logging in the test)",
        pytrace=False,
    )


@pytest.fixture(scope="session", autouse=True)
def broker_queues() -> Iterator[QueueLedger]:
    """The RabbitMQ queues this session's buses declare (tests/queue_ledger.py), deleted
    at its end; first, the idle ones of sessions that died before deleting theirs. The
    broker is reached only if there is something to delete."""
    if any(LEDGER_DIR.glob("*.queues")):
        sweep(RABBITMQ_URL)
    ledger = QueueLedger(RABBITMQ_URL)
    with ledger.recording():
        yield ledger
    ledger.close()


@pytest.fixture(autouse=True)
def queues_of_the_test_deleted(broker_queues: QueueLedger) -> Iterator[None]:
    """Delete the queues declared during the test once its fixtures are torn down (set
    up first, this one is torn down last); one still consumed waits for the session's
    end. A fixture wider than a test's that declares queues declares them in its setup,
    before this one's: those stay until the session's end."""
    mark = broker_queues.mark()
    yield
    declared = broker_queues.declared_since(mark)
    if declared:
        broker_queues.delete(declared, idle_only=True)


@pytest.fixture
def rabbitmq_url() -> str:
    require_service("rabbitmq")
    return RABBITMQ_URL


@pytest.fixture
def pg_database(postgres_url: str):  # type: ignore[no-untyped-def]
    """A PostgreSQL database of the test's own (empty), dropped after with its
    connections: one whose connections the test may end or which it makes read-only."""
    from pg_database import PgDatabase

    db = PgDatabase()
    db.create()
    yield db
    db.drop()


@pytest.fixture
def mqtt_url() -> str:
    require_service("mosquitto")
    return MQTT_URL


@pytest.fixture
def postgres_url() -> str:
    require_service("postgresql")
    return POSTGRES_URL


# --- the controller app ---------------------------------------------------------


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    from tme.config import Settings

    return Settings(database={"url": f"sqlite:///{tmp_path}/tme.db"}, broker={"url": "memory://"})


@pytest.fixture(scope="session")
def upgraded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database upgraded to head once per session: upgrading one from empty
    takes 0.2 s or more (migration 0010 builds eight tables again), and hundreds of
    tests each start from an empty, upgraded database."""
    from tme.controller.store.db import make_engine, upgrade

    path = tmp_path_factory.mktemp("schema") / "upgraded.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as connection:  # everything in the file itself, none in a WAL
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


@pytest.fixture
def fresh_sqlite(upgraded_sqlite: Path) -> Callable[[Path], Engine]:
    """fresh_sqlite(path) -> the engine of a new, upgraded SQLite database at `path`
    (a copy of the session's upgraded one)."""
    from tme.controller.store.db import make_engine

    def make(path: Path) -> Engine:
        shutil.copyfile(upgraded_sqlite, path)
        return make_engine(f"sqlite:///{path}")

    return make


@pytest.fixture
def app_engine(app_settings, fresh_sqlite):  # type: ignore[no-untyped-def]
    from tme.controller.store.db import make_engine, upgrade

    url = str(app_settings.database.url)
    if url.startswith("sqlite:///"):
        engine = fresh_sqlite(Path(url.removeprefix("sqlite:///")))
    else:
        engine = make_engine(url)
        upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def fixture_password() -> Iterator[str]:
    """The password of the users the fixtures make, hashed once per session.

    argon2id at its recommended cost takes 0.1-0.3 s a hash on a busy 2-core machine, and
    the fixtures make one to six users per test. While this fixture is active, creating a
    user with this password stores that one real argon2id hash of it (so logging in with
    it works as for any user); every other password is hashed as usual, with its own salt.
    """
    from tme.controller.services import users

    password = f"fixture-{secrets.token_urlsafe(12)}"
    real = users.hash_password
    hashed_once = real(password)

    def hash_password(given: str) -> str:
        return hashed_once if given == password else real(given)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(users, "hash_password", hash_password)
        yield password


@pytest.fixture
def admin_credentials(app_engine, fixture_password):  # type: ignore[no-untyped-def]
    """An admin user (all sites) and its API token in the app's database."""
    from tme.controller.services.bootstrap import make_user_with_token

    return make_user_with_token(app_engine, "admin", "admin", "*", password=fixture_password)


@pytest.fixture
def admin_token(admin_credentials) -> str:  # type: ignore[no-untyped-def]
    return str(admin_credentials.token)


@pytest.fixture
def make_token(app_engine, fixture_password) -> Callable[..., str]:  # type: ignore[no-untyped-def]
    """make_token(role, sites) -> a bearer token of a new user with that grant."""
    from tme.controller.services.bootstrap import make_user_with_token

    def make(role: str, sites: str = "*") -> str:
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        return make_user_with_token(app_engine, name, role, sites, password=fixture_password).token

    return make


@pytest.fixture
def app(app_settings, app_engine, admin_token):  # type: ignore[no-untyped-def]
    """A controller app on a fresh, upgraded SQLite database, with an admin and its token.

    Its routes are resolved by their first requests, not all at start (0.1 s a test):
    the route matrix (tests/security) sends a request to every route, and the tests that
    build their app themselves start it as production does."""
    from tme.controller.app import create_app

    return create_app(app_settings, engine=app_engine, warm=False)


@pytest.fixture
def test_client(app, admin_token):  # type: ignore[no-untyped-def]
    """An httpx.Client talking to the app in-process (its lifespan runs), as the admin."""
    from fastapi.testclient import TestClient

    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(app, headers=headers) as client:
        yield client


@pytest.fixture
def live_url(app, admin_token, monkeypatch):  # type: ignore[no-untyped-def]
    """The app served by a real uvicorn server on a free port, in a thread.

    TME_TOKEN is set to the admin's token, so SDK and CLI calls are authorised.
    """
    import threading

    monkeypatch.setenv("TME_TOKEN", admin_token)

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="uvicorn to start")
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture(scope="session")
def upgraded_postgres(postgres_database_url: str) -> str:
    """The session's PostgreSQL test database, upgraded to head once (the URL)."""
    from tme.controller.store.db import make_engine, upgrade

    engine = make_engine(postgres_database_url)
    upgrade(engine)
    engine.dispose()
    return postgres_database_url


@pytest.fixture(scope="session")
def postgres_database_url():  # type: ignore[no-untyped-def]
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    import uuid

    require_service("postgresql")
    import psycopg

    name = f"tme_test_{uuid.uuid4().hex[:12]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
