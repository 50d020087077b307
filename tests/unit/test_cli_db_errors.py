"""Database errors the CLI meets, each as one line that says what to do: a schema newer
than this TME, `tme controller` on a database it cannot reach, and a URL SQLAlchemy
parses but cannot use (its password never shown)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_lines import one_line_error
from sqlalchemy import text
from typer.testing import CliRunner

from tme.cli.common import _hide_password, database_errors
from tme.cli.main import app
from tme.controller.store.db import check_schema, head_revision, make_engine, upgrade
from tme.errors import SchemaOutOfDate

FUTURE = "ffff_future"  # a revision no TME has: made by a newer one, as far as this knows


@pytest.fixture
def newer_database(tmp_path: Path) -> Iterator[str]:
    """A SQLite database whose schema a newer TME has upgraded past this one's head."""
    url = f"sqlite:///{tmp_path}/newer.db"
    engine = make_engine(url)
    try:
        upgrade(engine)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM alembic_version"))
            connection.execute(text(f"INSERT INTO alembic_version VALUES ('{FUTURE}')"))
    finally:
        engine.dispose()
    yield url


def test_check_schema_and_upgrade_refuse_a_newer_schema(newer_database: str) -> None:
    engine = make_engine(newer_database)
    try:
        for attempt in (check_schema, upgrade):
            with pytest.raises(SchemaOutOfDate) as refused:
                attempt(engine)
            assert refused.value.message == (
                f"the database schema is at revision {FUTURE}, newer than this TME"
                f" ({head_revision()}): run a TME at least as new as the database"
            )
    finally:
        engine.dispose()


def test_db_upgrade_and_user_list_on_a_newer_schema_say_to_run_a_newer_tme(
    newer_database: str,
) -> None:
    for command in (
        ["db", "upgrade", "--url", newer_database],
        ["user", "list", "--db", newer_database],
    ):
        line = one_line_error(CliRunner().invoke(app, command))
        assert "newer than this TME" in line and "run a TME at least as new" in line
        assert "tme db upgrade" not in line
    current = CliRunner().invoke(app, ["db", "current", "--url", newer_database])
    assert current.exit_code == 0 and f"database: {FUTURE}" in current.output


@pytest.fixture
def no_logging_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tme controller` routes logging to the stderr of the moment (the runner's, closed
    after the call): leave this process's logging as it is."""
    monkeypatch.setattr("tme.logs.configure_logging", lambda *_args, **_kwargs: None)


@pytest.mark.usefixtures("no_logging_setup")
def test_controller_reports_an_unreachable_database_in_one_line() -> None:
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://tme:hunter2@127.0.0.1:{port}/tme"
    result = CliRunner().invoke(app, ["controller"], env={"TME_DATABASE__URL": url})
    line = one_line_error(result)
    assert "cannot use the database at postgresql://tme:***@127.0.0.1" in line
    assert "hunter2" not in line


@pytest.mark.usefixtures("no_logging_setup")
def test_controller_reports_a_url_it_cannot_use_in_one_line() -> None:
    url = "postgresql://tme:hunter2@db:abc/tme"
    result = CliRunner().invoke(app, ["controller"], env={"TME_DATABASE__URL": url})
    line = one_line_error(result)
    assert "database URL 'postgresql://tme:***@db:abc/tme'" in line and "hunter2" not in line


def test_a_port_that_is_not_a_number_is_one_line_without_the_password() -> None:
    url = "postgresql://u:s3cret@h:abc/db"
    line = one_line_error(CliRunner().invoke(app, ["db", "current", "--url", url]))
    assert "database URL 'postgresql://u:***@h:abc/db'" in line and "int()" in line
    assert "s3cret" not in line


def test_hide_password_of_a_url_sqlalchemy_cannot_parse() -> None:
    assert _hide_password("postgresql://u:p@ss:w0rd@h:abc/db") == "postgresql://u:***@h:abc/db"
    assert _hide_password("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert _hide_password("not-a-url") == "not-a-url"


def test_a_value_error_not_about_the_url_is_not_blamed_on_it() -> None:
    with pytest.raises(ValueError, match="naive datetime"), database_errors("sqlite://"):
        raise ValueError("naive datetime given to a UTC column")


@pytest.mark.parametrize(
    "command",
    [["audit", "verify"], ["audit", "tail"], ["user", "list"], ["token", "list"]],
)
def test_a_sqlite_file_that_does_not_exist_is_named_and_not_made(
    command: list[str], tmp_path: Path
) -> None:
    """A typo in --db made an empty file there, and the error said to run `tme db
    upgrade`, which would have made a new database at the typo."""
    typo = tmp_path / "tme-typo.db"
    result = CliRunner().invoke(app, [*command, "--db", f"sqlite:///{typo}"])
    assert one_line_error(result) == f"error: no database at {typo}: check --db or database.url"
    assert not typo.exists()


@pytest.mark.usefixtures("no_logging_setup")
def test_controller_reports_an_unreachable_broker_in_one_line(
    fresh_sqlite,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # It logged "Application startup failed. Exiting." after a traceback of a hundred
    # lines ending in "RabbitMQ unreachable: AMQPConnectionError", naming no broker.
    fresh_sqlite(tmp_path / "tme.db").dispose()
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "TME_DATABASE__URL": f"sqlite:///{tmp_path / 'tme.db'}",
        "TME_BROKER__URL": f"amqp://tme:hunter2@127.0.0.1:{port}/%2F",
    }
    line = one_line_error(CliRunner().invoke(app, ["controller"], env=env))
    assert f"RabbitMQ unreachable at 127.0.0.1:{port}" in line and "hunter2" not in line


@pytest.mark.usefixtures("no_logging_setup")
def test_controller_reports_a_port_in_use_in_one_line_before_it_starts(
    fresh_sqlite,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    # It started in full (scheduler, dispatcher, event consumer), then logged uvicorn's
    # "[Errno 98] error while attempting to bind" and exited 3.
    fresh_sqlite(tmp_path / "tme.db").dispose()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "TME_DATABASE__URL": f"sqlite:///{tmp_path / 'tme.db'}",
            "TME_BROKER__URL": "memory://port-in-use",
            "TME_HTTP__HOST": "127.0.0.1",
            "TME_HTTP__PORT": str(port),
        }
        line = one_line_error(CliRunner().invoke(app, ["controller"], env=env))
    assert f"cannot listen on 127.0.0.1:{port}" in line, line


def test_the_controller_believes_forwarded_headers_from_its_trusted_proxies_only() -> None:
    """Behind a TLS proxy on another host the session cookie went without Secure: only
    loopback's X-Forwarded-Proto was believed, and nothing could say otherwise."""
    from tme.cli.serve import uvicorn_config
    from tme.config import Settings

    default = uvicorn_config(object(), Settings())
    assert default.proxy_headers and default.forwarded_allow_ips == "127.0.0.1"
    behind = Settings(http={"trusted_proxies": ["10.0.0.5", "192.168.7.0/24"]})
    assert uvicorn_config(object(), behind).forwarded_allow_ips == "10.0.0.5,192.168.7.0/24"


def test_tme_db_current_names_a_missing_sqlite_file_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only command: it made the file's folders (rel/) and an empty database."""
    from tme.controller.store.db import head_revision

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["db", "current"], env={"TME_DATABASE__URL": "sqlite:///rel/x.db"}
    )
    assert result.exit_code == 0, result.output
    where = tmp_path / "rel" / "x.db"
    said = " ".join(result.stdout.split())
    assert said == (
        f"database: empty (no file at {where} yet: tme db upgrade makes it);"
        f" needed: {head_revision()}"
    )
    assert not (tmp_path / "rel").exists()
