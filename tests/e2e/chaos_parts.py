"""The parts of the fault-injection tests, each one a test can break on its own.

    controller (in this process or a child one, its own RabbitMQ connections)  --RabbitMQ-->
    gateway (child process)  --private Mosquitto (child process)-->
    agent (child process, `python -m tme.agents`)  --Modbus TCP-->  plant (this process)

The gateway and the agent are processes so that a test can SIGKILL them; Mosquitto is
the test's own on a free port, so that a test can stop it without touching the shared
one. The RabbitMQ connections are named `<site>-ctl:...` and `<site>-gw:...`, so that
a test closes its own connections and no one else's. A test on PostgreSQL has a
database of its own (pg_database.PgDatabase), whose connections it may end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
from chaos_roles import controller_settings, open_controller_bus
from ports import free_port, listening
from rabbitmq_admin import rabbitmqctl, require_rabbitmqctl
from waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "configs" / "profiles"
ROLES = Path(__file__).with_name("chaos_roles.py")
START_TIMEOUT_S = 30.0


class Mosquitto:
    """A Mosquitto of the test's own, configured like configs/mosquitto/tme.conf (without
    its accounts): persistent sessions saved to a folder of the test, which a stop with
    SIGTERM writes out and a start on the same port reads back."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(binary):
            pytest.skip("mosquitto is not installed")
        self.binary, self.port = binary, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            "max_queued_messages 100000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"
            "set_tcp_nodelay true\n"
            f"persistence true\npersistence_location {folder}/\n"
            "autosave_interval 5\nautosave_on_changes false\n"
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.log = (folder / "mosquitto.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.conf)], stdout=self.log, stderr=self.log
        )
        process = self.process
        wait_until(
            lambda: listening(self.port) or process.poll() is not None,
            timeout=10,
            what="mosquitto listening",
        )
        if process.poll() is not None:
            pytest.fail(f"mosquitto exited with {process.returncode}; see {self.log.name}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(30)
        self.process = None

    def close(self) -> None:
        self.stop()
        self.log.close()


class Child:
    """A process a test may SIGKILL and start again with the same arguments."""

    def __init__(self, name: str, argv: list[str], log: Path, ready: str | None) -> None:
        self.name, self.argv, self.ready = name, argv, ready
        self.log = log.open("ab")
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        if self.ready is not None:
            assert self.process.stdout is not None
            line = _read_line(self.process.stdout, START_TIMEOUT_S)
            assert line.strip() == self.ready, f"{self.name} said {line!r} (log: {self.log.name})"

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as a power cut or the OOM killer."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(30)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the process stalls (a busy or swapping host) with its connections open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Stop cleanly: the gateway role stops when its stdin closes, an agent on SIGTERM."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            assert process.stdin is not None
            with suppress(BrokenPipeError):
                process.stdin.close()
            process.send_signal(signal.SIGCONT)  # a paused one could not stop
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)

    def close(self) -> None:
        self.stop()
        self.log.close()


def _stopped_within(thread: threading.Thread, timeout: float) -> None:
    """Fail when the controller's shutdown hangs: its threads would go on after the test,
    on a database and a broker the test is deleting."""
    thread.join(timeout)
    assert not thread.is_alive(), f"the controller did not stop within {timeout} s"


def _read_line(stream: Any, timeout: float) -> str:
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not got:
        raise TimeoutError(f"no answer within {timeout} s")
    return got[0]


def gateway_child(site: str, bus_url: str, mqtt_url: str, state_dir: Path, log: Path) -> Child:
    argv = [sys.executable, str(ROLES), "gateway", site, bus_url, mqtt_url, str(state_dir)]
    return Child("gateway", argv, log, ready="ready")


def agent_child(
    site: str, agent: str, mqtt_url: str, plant_port: int, state_dir: Path, log: Path
) -> Child:
    """`python -m tme.agents` driving the plant's pump (unit 1)."""
    config = state_dir.parent / f"{agent}.yaml"
    config.write_text(
        f"site: {site}\nagent: {agent}\nmqtt: {mqtt_url}\nstate_dir: {state_dir}\n"
        "worker_count: 4\n"
        "devices:\n  pump1:\n    driver: modbus_tcp\n"
        f"    connection: {{host: 127.0.0.1, port: {plant_port}, timeout_s: 5}}\n"
        f"    unit: 1\n    profile: {PROFILES / 'pump.yaml'}\n"
    )
    argv = [sys.executable, "-m", "tme.agents", "-c", str(config)]
    return Child(agent, argv, log, ready=None)


class Controller:
    """The controller app (API, dispatcher, event consumer) in this process, on a bus
    opened here so that its connections carry the test's name. On PostgreSQL,
    `database_url` may lead through a relay a test cuts (see PgDatabase)."""

    def __init__(self, site: str, bus_url: str, database_url: str, connection_name: str) -> None:
        self.site, self.bus_url = site, bus_url
        self.database_url, self.connection_name = database_url, connection_name
        self.url = self.token = ""
        self.engine: Any = None
        self._exit = ExitStack()

    @property
    def events_queue(self) -> str:
        return f"tme.controller.events.{self.site}"

    def start(self) -> None:
        import uvicorn

        from tme.controller.app import create_app
        from tme.controller.services.bootstrap import create_admin
        from tme.controller.store.db import make_engine, upgrade

        settings = controller_settings(self.site, self.bus_url, self.database_url)
        self.engine = make_engine(settings.database.url)
        upgrade(self.engine)
        self._exit.callback(self.engine.dispose)
        self.token = create_admin(self.engine).token
        bus = open_controller_bus(self.bus_url, self.connection_name)
        bus.start()
        self._exit.callback(bus.stop)
        app = create_app(settings, engine=self.engine, bus=bus)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self._exit.callback(sock.close)
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="chaos-http", daemon=True
        )
        thread.start()
        self._exit.callback(_stopped_within, thread, 30)
        self._exit.callback(setattr, server, "should_exit", True)
        wait_until(lambda: server.started or not thread.is_alive(), timeout=START_TIMEOUT_S)
        assert server.started, "the controller did not start"
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stop(self) -> None:
        self._exit.close()


class ControllerProcess:
    """The controller as a child process (chaos_roles.py controller), which a test may
    SIGKILL and start again on the same database; its RabbitMQ connections are named
    `<site>-ctl`. The database is upgraded and its admin made here, once; `engine`
    reads it from this process."""

    def __init__(self, site: str, bus_url: str, database_url: str, log: Path) -> None:
        port = free_port()
        self.url, self.token, self.database_url = f"http://127.0.0.1:{port}", "", database_url
        self.engine: Any = None
        argv = [sys.executable, str(ROLES), "controller", site, bus_url, database_url, str(port)]
        self.child = Child("controller", argv, log, ready="ready")

    def start(self) -> None:
        from tme.controller.services.bootstrap import create_admin
        from tme.controller.store.db import make_engine, upgrade

        if self.engine is None:
            self.engine = make_engine(self.database_url)
            upgrade(self.engine)
            self.token = create_admin(self.engine).token
        self.child.start()

    def kill(self) -> None:
        self.child.kill()

    def stop(self) -> None:
        self.child.close()
        if self.engine is not None:
            self.engine.dispose()


def queue_depths(queue: str) -> dict[str, int]:
    """Messages of `queue` waiting (`ready`) and delivered but not acked (`unacked`)."""
    require_rabbitmqctl()
    lines = rabbitmqctl(
        "list_queues", "--no-table-headers", "name", "messages_ready", "messages_unacknowledged"
    )
    for line in lines.splitlines():
        found, ready, unacked = line.split("\t")
        if found == queue:
            return {"ready": int(ready), "unacked": int(unacked)}
    raise AssertionError(f"no queue {queue!r} on the broker")


class DeadLetterTap:
    """A queue of the test's own on the dead-letter exchange, bound to the site's
    routing keys (dead letters keep theirs): what of the site's commands and events
    was dead-lettered while it was open. Deleted on exit."""

    def __init__(self, bus_url: str, site: str) -> None:
        self.bus_url, self.site = bus_url, site
        self.queue = f"tme.test.dead.{site}"

    def __enter__(self) -> DeadLetterTap:
        from tme.protocol import DEAD_LETTER_EXCHANGE, site_routing_key

        with self._channel() as channel:
            channel.exchange_declare(DEAD_LETTER_EXCHANGE, "topic", durable=True)
            channel.queue_declare(self.queue, durable=True)
            for key in (f"{self.site}.#", site_routing_key(self.site)):
                channel.queue_bind(self.queue, DEAD_LETTER_EXCHANGE, key)
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._channel() as channel:
            channel.queue_delete(self.queue)

    def count(self) -> int:
        with self._channel() as channel:
            return int(channel.queue_declare(self.queue, passive=True).method.message_count)

    @contextmanager
    def _channel(self) -> Iterator[Any]:
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.bus_url))
        try:
            yield connection.channel()
        finally:
            connection.close()
