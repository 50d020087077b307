"""Local receivers for notifications (an SMTP server, aiosmtpd; an HTTP endpoint; one
that never finishes answering), the notifier, and principals of other roles."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from notify_helpers import reaching_loopback
from ports import free_port


@dataclass
class Inbox:
    messages: list[Any] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        from email import message_from_bytes

        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        self.arrived.set()
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, int, Inbox]]:
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield "127.0.0.1", port, inbox
    controller.stop()


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    # status codes to answer, in order; then 200
    answers: list[int] = field(default_factory=list)
    delivered: threading.Event = field(default_factory=threading.Event)

    def body(self, index: int) -> dict[str, Any]:
        return dict(json.loads(self.requests[index][1]))


@pytest.fixture
def http_receiver() -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.requests.append((dict(self.headers.items()), body))
            status = receiver.answers.pop(0) if receiver.answers else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"try again")
            if status < 300:
                receiver.delivered.set()

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    # shutdown() waits for the loop to look at its flag: every 0.5 s by default
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@dataclass
class Dripper:
    """An HTTP endpoint that takes a request, then answers a header line every 50 ms
    and never finishes: each read gets data, the answer never ends. After `release`,
    the answers in progress end with the connection closed (a failed attempt), and
    later requests are answered 204 at once."""

    url: str
    accepted: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    requests: int = 0


@pytest.fixture
def dripping_server() -> Iterator[Dripper]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)  # to notice the end of the test between connections
    dripper = Dripper(url=f"http://127.0.0.1:{listener.getsockname()[1]}/hook")
    closing = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            dripper.requests += 1
            dripper.accepted.set()
            try:
                if dripper.release.is_set():
                    conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                while not dripper.release.wait(0.05):  # the pace of the drip
                    conn.sendall(b"X-Drip: x\r\n")
            except OSError:
                return

    def serve() -> None:
        answering: list[threading.Thread] = []
        while not closing.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            answering.append(threading.Thread(target=answer, args=(conn,), daemon=True))
            answering[-1].start()
        for thread in answering:
            thread.join(timeout=5)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield dripper
    dripper.release.set()
    closing.set()
    thread.join(timeout=5)
    listener.close()


@pytest.fixture
def feed(app_engine):  # type: ignore[no-untyped-def]
    from tme.controller.change_feed import ChangeFeed

    return ChangeFeed(app_engine)


@pytest.fixture
def start_notifier(app_engine, feed) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """start(settings, max_attempts=5, backoff_s=0.05, poll_s=0.02) -> a running notifier,
    quick to poll and retry unless told."""
    from tme.controller.notifications.notifier import Notifier

    started: list[Notifier] = []

    def start(settings: Any, max_attempts: int = 5, **timing: float) -> Notifier:
        settings = reaching_loopback(settings)
        timing = {"backoff_s": 0.05, "poll_s": 0.02, **timing}
        notifier = Notifier(app_engine, settings, feed, max_attempts=max_attempts, **timing)
        notifier.start()
        started.append(notifier)
        return notifier

    yield start
    for notifier in started:
        notifier.stop()
