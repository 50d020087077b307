"""`tme gateway` that cannot open RabbitMQ stops with one line saying why: where it is
(a port nothing listens on), or that the login was refused (a wrong password), not
pika's eight ERROR lines and traceback, nor a hint about gateway.declare_topology that
fits only a user without configure permission."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cli_lines import failing_tme
from ports import free_port

pytestmark = pytest.mark.external_service


def _gateway(tmp_path: Path, broker: str) -> list[str]:
    return [
        "gateway", "--site", f"s{uuid.uuid4().hex[:8]}", "--broker", broker,
        "--mqtt", f"mqtt://127.0.0.1:{free_port()}", "--state-dir", str(tmp_path / "gw"),
    ]  # fmt: skip


def test_a_port_nothing_listens_on_is_named(tmp_path: Path) -> None:
    port = free_port()
    code, line = failing_tme(
        _gateway(tmp_path, f"amqp://guest:guest@127.0.0.1:{port}/%2F"), tmp_path
    )
    assert code == 1
    assert f"RabbitMQ unreachable at 127.0.0.1:{port}" in line and "refused" in line, line


def test_a_refused_login_says_so_without_the_topology_hint(
    tmp_path: Path, rabbitmq_url: str
) -> None:
    broker = urlsplit(rabbitmq_url)
    wrong = f"amqp://guest:not-the-password@{broker.hostname}:{broker.port or 5672}/%2F"
    code, line = failing_tme(_gateway(tmp_path, wrong), tmp_path)
    assert code == 1
    assert "refused the login of user 'guest'" in line, line
    assert "declare_topology" not in line, line
