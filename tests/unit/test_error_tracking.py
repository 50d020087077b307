"""Unhandled errors are logged with their process and thread and, with a DSN set,
reported to a Sentry-compatible service: here a local HTTP receiver standing in for
one. Each case runs in a fresh interpreter, since the hooks are process-wide."""

from __future__ import annotations

import gzip
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from waiting import wait_until

SCRIPT = """
import threading
from tme.config import Settings
from tme.error_tracking import install_error_tracking
settings = Settings.model_validate({{"error_tracking": {{"enabled": {enabled}, "dsn": "{dsn}"}}}})
print("reporting" if install_error_tracking(settings, process="controller") else "logging only")
worker = threading.Thread(target=lambda: 1 / 0, name="tme-test-worker")
worker.start()
worker.join()
if {enabled}:
    import sentry_sdk
    sentry_sdk.flush(10)
"""


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    # shutdown() waits for the loop to look at its flag: every 0.5 s by default
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://public@127.0.0.1:{server.server_address[1]}/42", _Receiver.received
    finally:
        server.shutdown()
        server.server_close()


def _run(enabled: bool, dsn: str) -> subprocess.CompletedProcess[str]:
    code = SCRIPT.format(enabled=enabled, dsn=dsn)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


AGENT_SCRIPT = """
import sys, threading
from tme.agents.agent_config import parse_agent_config, track_errors
config = parse_agent_config(
    {{"site": "s1", "agent": "a1", "error_tracking": {{"enabled": True, "dsn": "{dsn}"}}}}
)
print("reporting" if track_errors(config) else "logging only")
worker = threading.Thread(target=lambda: 1 / 0, name="tme-test-worker")
worker.start()
worker.join()
import sentry_sdk
sentry_sdk.flush(10)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pydantic", "sqlmodel", "fastapi")))
"""


def test_an_unhandled_thread_error_is_logged_with_process_and_thread() -> None:
    done = _run(False, "")
    assert done.stdout.strip() == "logging only"
    assert "unhandled ZeroDivisionError in controller (thread tme-test-worker)" in done.stderr
    assert "Traceback" in done.stderr


def test_with_a_dsn_the_error_reaches_the_tracking_service(receiver) -> None:  # type: ignore[no-untyped-def]
    dsn, received = receiver
    done = _run(True, dsn)
    assert done.stdout.strip() == "reporting"
    wait_until(
        lambda: any(b"ZeroDivisionError" in body for _path, body in received),
        what="the error at the receiver",
    )
    path, body = next((p, b) for p, b in received if b"ZeroDivisionError" in b)
    assert path.startswith("/api/42/")
    assert b'"server_name":"controller"' in body.replace(b" ", b"")


def test_the_agent_reports_from_its_own_config_file_settings(receiver) -> None:  # type: ignore[no-untyped-def]
    dsn, received = receiver
    done = subprocess.run(
        [sys.executable, "-c", AGENT_SCRIPT.format(dsn=dsn)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    reported, heavy = done.stdout.strip().splitlines()
    assert reported == "reporting"
    assert heavy == "[]"  # error tracking loads nothing of the controller's stack
    assert "unhandled ZeroDivisionError in agent s1/a1 (thread tme-test-worker)" in done.stderr
    wait_until(
        lambda: any(b"ZeroDivisionError" in body for _path, body in received),
        what="the agent's error at the receiver",
    )
