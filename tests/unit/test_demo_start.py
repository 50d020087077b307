"""`tme demo` on a port in use says so in one line; started again on its data, it sets
and prints a new admin password (there is no other way back into the dashboard)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from cli_lines import failing_tme
from sqlmodel import Session

from tme.controller.services.users import authenticate
from tme.controller.store.db import make_engine, upgrade
from tme.errors import AuthError
from tme.stack import LocalStack, StackConfig


def test_a_port_in_use_is_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = ["demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")]
        _code, line = failing_tme(demo, tmp_path)
    assert f"127.0.0.1:{port}" in line
    assert "stop the other process or pass --port" in line


def _signs_in(engine: object, password: str) -> bool:
    with Session(engine) as session:  # type: ignore[arg-type]
        try:
            authenticate(session, "admin", password)
        except AuthError:
            return False
        return True


def test_a_restart_on_the_same_data_gives_a_new_admin_password(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/tme.db")
    upgrade(engine)
    config = StackConfig(database_url="", state_dir=tmp_path, profiles_dir=tmp_path)
    try:
        first = LocalStack(config)
        first._make_admin(engine)  # the first start: a fresh database
        again = LocalStack(config)
        again._make_admin(engine)  # a restart on the same database
        assert again.admin_password and again.token
        assert again.admin_password != first.admin_password
        assert _signs_in(engine, again.admin_password)  # the printed one lets them in
        assert not _signs_in(engine, first.admin_password)
    finally:
        engine.dispose()


def test_the_demo_listens_on_the_http_port_setting_unless_given_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # configuration.md: "A laptop with a different port": http.port (TME_HTTP__PORT,
    # override.yaml) was left unread by `tme demo`, which took 8000 whatever it said.
    from typer.testing import CliRunner

    import tme.logs
    import tme.stack
    from tme.cli.main import app

    started: list[StackConfig] = []

    class Started(Exception):
        pass

    def stack(config: StackConfig) -> None:
        started.append(config)
        raise Started

    monkeypatch.setattr(tme.stack, "LocalStack", stack)
    monkeypatch.setattr(tme.logs, "configure_logging", lambda settings: None)
    monkeypatch.delenv("TME_HTTP__PORT", raising=False)
    monkeypatch.delenv("TME_CONFIG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no configs folder here: the settings' defaults
    demo = ["demo", "--data-dir", str(tmp_path / "demo")]
    for args, env, port in (
        ([], {}, 8000),
        ([], {"TME_HTTP__PORT": "9000"}, 9000),
        (["--port", "9100"], {"TME_HTTP__PORT": "9000"}, 9100),
    ):
        result = CliRunner().invoke(app, [*demo, *args], env=env)
        assert isinstance(result.exception, Started), result.output
        assert (started[-1].http_host, started[-1].http_port) == ("127.0.0.1", port)
