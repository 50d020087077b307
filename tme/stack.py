"""A whole TME in one process: controller, gateway, agents and simulated machines.

`tme demo`, the end-to-end tests and the benchmarks assemble the same stack:

    controller (REST API, dispatcher, event consumer)  --bus-->  site gateway
    --MQTT-->  agents: skid-a (pump and tank), line-b (conveyor), lab-c (instrument)
    --Modbus TCP / serial-->  simulated plant and instrument

The bus is `memory://` or RabbitMQ; MQTT is an embedded broker or a real one.
Everything started here is stopped by `stop()` (or leaving the `with` block).
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 20.0


@dataclass
class StackConfig:
    database_url: str
    state_dir: Path
    profiles_dir: Path
    site: str = "plant-1"
    bus_url: str = "memory://"
    mqtt_url: str | None = None  # None: start the embedded broker
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0: a free port
    settings_overrides: dict[str, Any] = field(default_factory=dict)
    # The NiceGUI dashboard at /ui; once per process, so tests leave it off.
    dashboard: bool = False
    # How long the agents wait for the simulated plant's answer (its connection's
    # timeout_s); a test that holds a bus with a late answer sets it longer.
    plant_timeout_s: float = 2.0

    # Each stack takes only its own site's events, so stacks sharing a broker (tests,
    # benchmarks) never consume one another's; its gateway declares the same queue.
    @property
    def events_queue(self) -> str:
        return f"tme.controller.events.{self.site}"

    @property
    def events_binding(self) -> str:
        return f"{self.site}.#"


# The demo's interlock: pump1 starts only while tank1 is below 95 % (run: false, the
# pump profile's safe value, is never refused).
TANK_HAS_ROOM = {
    "point": "run",
    "requires": {"device": "tank1", "point": "level", "below": 95},
    "why": "the tank it fills is nearly full",
}


def agent_layout(
    site: str,
    profiles: Path,
    plant_port: int,
    instrument_url: str,
    plant_timeout_s: float = 2.0,
) -> list[dict[str, Any]]:
    """The three demo agents and the simulated devices each one drives."""
    tcp = {"host": "127.0.0.1", "port": plant_port, "timeout_s": plant_timeout_s}

    def modbus(unit: int, profile: str) -> dict[str, Any]:
        return {
            "driver": "modbus_tcp",
            "connection": tcp,
            "unit": unit,
            "profile": str(profiles / profile),
        }

    return [
        {
            "site": site,
            "agent": "skid-a",
            "devices": {
                # starting the pump needs room in the tank it fills (stopping never waits)
                # and it is stopped by its agent after 5 minutes cut off from the controller
                "pump1": {
                    **modbus(1, "pump.yaml"),
                    "interlocks": [TANK_HAS_ROOM],
                    "stop_on_link_loss_s": 300,
                },
                "tank1": modbus(2, "tank.yaml"),
            },
        },
        {"site": site, "agent": "line-b", "devices": {"conveyor1": modbus(3, "conveyor.yaml")}},
        {
            "site": site,
            "agent": "lab-c",
            "devices": {
                "meter1": {
                    "driver": "serial",
                    "connection": {"port": instrument_url, "timeout_s": 2},
                    "profile": str(profiles / "instrument.yaml"),
                }
            },
        },
    ]


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._exit = ExitStack()
        self.plant: Any = None
        self.instrument: Any = None
        self.mqtt_url = config.mqtt_url or ""
        self.url = ""
        # The admin made at start: its password (printed once by `tme demo`) and token.
        self.admin_password = ""
        self.token = ""
        self.app: Any = None
        self.agents: dict[str, Any] = {}
        self._agent_configs: dict[str, Any] = {}
        self.agent_files: dict[str, Path] = {}  # each agent's config, as a YAML file
        self.gateway: Any = None
        self._sock: socket.socket | None = None

    def __enter__(self) -> LocalStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        # the port first: one in use stops the start before anything else began
        self._sock = listening_socket(self.config.http_host, self.config.http_port)
        self._exit.callback(self._sock.close)
        self._start_machines()
        self._start_mqtt()
        self._start_controller()
        self._start_gateway()
        self._start_agents()

    def stop(self) -> None:
        self._exit.close()

    # --- parts -------------------------------------------------------------------

    def _start_machines(self) -> None:
        from tme.simulators.instrument import SerialInstrument
        from tme.simulators.modbus_plant import PlantSimulator

        self.plant = self._exit.enter_context(PlantSimulator.run_in_thread())
        self.instrument = self._exit.enter_context(SerialInstrument.run_in_thread())

    def _start_mqtt(self) -> None:
        if self.config.mqtt_url:
            return
        from tme.embedded_broker import EmbeddedBroker

        broker = EmbeddedBroker()
        broker.start()
        self._exit.callback(broker.stop)
        self.mqtt_url = broker.url

    def _start_controller(self) -> None:
        import uvicorn

        from tme.config import Settings
        from tme.controller.app import create_app
        from tme.controller.store.db import make_engine, upgrade

        cfg = self.config
        settings = Settings.model_validate(
            {
                **cfg.settings_overrides,
                "database": {"url": cfg.database_url},
                "broker": {
                    "url": cfg.bus_url,
                    "events_queue": cfg.events_queue,
                    "events_binding": cfg.events_binding,
                },
                "http": {"host": cfg.http_host, "port": cfg.http_port},
            }
        )
        database = settings.database
        engine = make_engine(
            database.url, pool_size=database.pool_size, tcp_timeout_s=database.tcp_timeout_s
        )
        upgrade(engine)
        self._exit.callback(engine.dispose)
        if cfg.bus_url.startswith("amqp"):
            self._exit.callback(_delete_queue, cfg.bus_url, settings.broker.events_queue)
        self.settings, self.engine = settings, engine
        self._make_admin(engine)
        self.app = create_app(settings, engine=engine, dashboard=cfg.dashboard)
        sock = self._sock
        if sock is None:
            raise RuntimeError("start() binds the controller's port first")
        server = uvicorn.Server(uvicorn.Config(self.app, log_config=None, access_log=False))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="tme-http", daemon=True
        )
        thread.start()
        self._exit.callback(thread.join, 15)
        self._exit.callback(setattr, server, "should_exit", True)
        _wait(lambda: server.started or not thread.is_alive(), "the controller to start")
        if not server.started:
            raise RuntimeError("the controller did not start; see the log above")
        host, port = sock.getsockname()[:2]
        self.url = f"http://{host}:{port}"

    def _make_admin(self, engine: Any) -> None:
        """An admin on a fresh database. A reused one keeps its users; its admin gets a
        new token and a new password, printed like the first (there is no other way back
        in for someone who lost the first start's output)."""
        import secrets
        from datetime import timedelta

        from tme.controller.services.bootstrap import create_admin
        from tme.controller.services.tokens import issue_token
        from tme.controller.services.users import list_users, new_password_hash, set_password
        from tme.controller.store.db import session_scope

        with session_scope(engine) as session:
            reused = bool(list_users(session))
        if reused:
            password = secrets.token_urlsafe(12)
            hashed = new_password_hash(password)  # before the transaction that stores it
            with session_scope(engine) as session:
                admin = set_password(session, "admin", hashed)
                issued = issue_token(session, admin, "demo", ttl=timedelta(1))
            self.admin_password, self.token = password, issued.value
            return
        credentials = create_admin(engine)
        self.admin_password, self.token = credentials.password, credentials.token

    def _start_gateway(self) -> None:
        from tme.agents.gateway import Gateway, GatewayConfig

        cfg = self.config
        gateway = Gateway(
            GatewayConfig(
                site=cfg.site,
                bus_url=cfg.bus_url,
                mqtt_url=self.mqtt_url,
                state_dir=cfg.state_dir / f"gateway-{cfg.site}",
                events_queue=cfg.events_queue,
                events_binding=cfg.events_binding,
            )
        )
        gateway.start()
        self._exit.callback(gateway.stop)
        self.gateway = gateway

    def _start_agents(self) -> None:
        from tme.agents.agent_config import parse_agent_config

        cfg = self.config
        profiles = cfg.profiles_dir.resolve()  # whole paths: the YAML files say them too
        layout = agent_layout(
            cfg.site, profiles, self.plant.port, self.instrument.url, cfg.plant_timeout_s
        )
        for data in layout:
            data.update(
                mqtt=self.mqtt_url,
                state_dir=str((cfg.state_dir / f"agent-{data['agent']}").resolve()),
                worker_count=self.settings.agent.worker_count,
            )
            self._agent_configs[data["agent"]] = parse_agent_config(data, source="demo")
            # as a file too, for what runs beside an agent (tme agent lock -c FILE)
            self.agent_files[data["agent"]] = _written(cfg.state_dir, data)
            self.start_agent(data["agent"])
        self._exit.callback(self._stop_agents)

    def start_agent(self, name: str) -> None:
        """Start (or start again) one of the stack's agents; its command record persists."""
        from tme.agents.agent import DeviceAgent
        from tme.agents.runner import AgentThread

        self.agents[name] = AgentThread(DeviceAgent(self._agent_configs[name])).start()

    def stop_agent(self, name: str) -> None:
        """Stop an agent cleanly (it publishes offline)."""
        self.agents.pop(name).stop()

    def _stop_agents(self) -> None:
        for name in list(self.agents):
            self.stop_agent(name)


def _written(state_dir: Path, data: dict[str, Any]) -> Path:
    """An agent's config as the YAML file `tme agent` reads."""
    import yaml

    path = state_dir / f"agent-{data['agent']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = json.loads(json.dumps(data))  # shared sections written out, not as YAML anchors
    path.write_text(yaml.safe_dump(plain, sort_keys=False))
    return path


def listening_socket(host: str, port: int) -> socket.socket:
    """The controller's socket, bound before uvicorn starts; a port in use is a
    ConfigError naming it (the CLI prints one line), not a traceback."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)  # "::": IPv6
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from tme.errors import ConfigError

        raise ConfigError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): {listen_hint(exc)}",
            key="http.port" if exc.errno == errno.EADDRINUSE else "http.host",
        ) from exc
    return sock


def listen_hint(exc: OSError) -> str:
    """What to do about a bind that failed: a port in use is another process's, while an
    address that is no name or none of this machine's ("Name or service not known",
    "Cannot assign requested address") needs another --host, not another --port."""
    if exc.errno == errno.EADDRINUSE:
        return "stop the other process or pass --port"
    return "pass --host an address of this machine (127.0.0.1, 0.0.0.0 for all)"


def _delete_queue(bus_url: str, queue: str) -> None:
    """Remove the stack's own events queue from a shared broker."""
    from tme.bus import open_bus

    bus = open_bus(bus_url)
    bus.start()
    try:
        bus.delete_queue(queue)
    finally:
        bus.stop()


def _wait(predicate: Any, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)  # start-up poll: uvicorn offers no event to wait on
