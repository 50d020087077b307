"""`tme controller --port 0` asks the OS for a free port, as `http.port: 0` does: the
port given was read with `or`, so 0 fell back to the setting's port (8000)."""

from __future__ import annotations

import pytest

from tme.cli.serve import serve_controller
from tme.config import Settings
from tme.errors import ConfigError


@pytest.mark.parametrize(("port", "bound"), [(0, 0), (None, 8123), (9001, 9001)])
def test_the_port_given_is_the_port_bound(
    monkeypatch: pytest.MonkeyPatch, port: int | None, bound: int
) -> None:
    asked: list[tuple[str, int]] = []

    def listening_socket(host: str, port: int) -> None:
        asked.append((host, port))
        raise ConfigError("stop before serving", key="http.port")

    monkeypatch.setattr("tme.stack.listening_socket", listening_socket)
    monkeypatch.setattr("tme.logs.configure_logging", lambda settings: None)
    settings = Settings(http={"host": "127.0.0.1", "port": 8123})
    with pytest.raises(SystemExit):
        serve_controller(settings, port=port, app=object())
    assert asked == [("127.0.0.1", bound)]
