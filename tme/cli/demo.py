"""`tme demo`: the whole of TME in one process, on simulated machines.

SQLite, the in-process bus, an embedded MQTT broker (or real servers with
--broker/--mqtt), one site gateway and three agents driving a simulated pump,
tank, conveyor and serial instrument, seeded with example tasks.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from tme.cli.output import console

EXAMPLE_TASKS: list[dict[str, Any]] = [
    {
        "name": "read tank 1 level",
        "op": "modbus.read",
        "target": {"agent": "skid-a", "device": "tank1"},
        "params": {"point": "level"},
    },
    {
        "name": "set pump 1 to 1200 rpm",
        "op": "modbus.write",
        "target": {"agent": "skid-a", "device": "pump1"},
        "params": {"point": "speed_setpoint", "value": 1200, "verify": True},
        # one run at a time on pump1: the start below waits for this one to end
        "resources": ["pump1"],
    },
    {
        "name": "start pump 1",
        "op": "modbus.write",
        "target": {"agent": "skid-a", "device": "pump1"},
        "params": {"point": "run", "value": True},
        "resources": ["pump1"],
    },
    {
        "name": "identify the meter",
        "op": "serial.command",
        "target": {"agent": "lab-c", "device": "meter1"},
        "params": {"command": "identify"},
    },
    {
        "name": "read conveyor position",
        "op": "modbus.read",
        "target": {"agent": "line-b", "device": "conveyor1"},
        "params": {"point": "position"},
    },
    {
        # refused at create once skid-a has published pump1 (a restart on the same
        # data, or its presence came first), else taken and rejected by the agent
        "name": "pump 1 overspeed (refused by the safety envelope)",
        "op": "modbus.write",
        "target": {"agent": "skid-a", "device": "pump1"},
        "params": {"point": "speed_setpoint", "value": 9000},
        "refused": True,
    },
    {
        "name": "manual inspection (reported by a person)",
        "op": "external",
        "assigned_to": "operator",
    },
]


def seed_examples(url: str, site: str, token: str | None = None) -> list[int]:
    """Create the example tasks, unless the database has tasks already (a demo started
    again on its data, which created them then, each start adding another copy); the
    ids of those created. The example meant to be refused may be refused at create
    (422), which is said, not raised."""
    import tme
    from tme.errors import ValidationError

    ids: list[int] = []
    with tme.Client(url, token) as client:
        if next(iter(client.tasks.list(page_size=1)), None) is not None:
            console.print("example tasks: not created, the database has tasks", highlight=False)
            return ids
        for example in EXAMPLE_TASKS:
            body: dict[str, Any] = dict(example)
            refused = body.pop("refused", False)
            if "target" in body:
                body["target"] = {"site": site, **body["target"]}
            try:
                ids.append(client.tasks.create(**body).id)
            except ValidationError as exc:
                if not refused:
                    raise
                console.print(
                    f"example {body['name']!r} refused at create, as meant: {exc.message}",
                    highlight=False,
                )
    return ids


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        port: Annotated[
            int | None,
            typer.Option(
                min=0,
                max=65535,
                help="HTTP port of the controller (default: the http.port setting).",
                show_default=False,
            ),
        ] = None,
        host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
        broker: Annotated[str, typer.Option(help="Bus URL: memory:// or amqp://...")] = "memory://",
        mqtt: Annotated[str | None, typer.Option(help="MQTT URL (default: embedded)")] = None,
        data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its state.")] = Path(
            "data/demo"
        ),
        site: Annotated[str, typer.Option(help="Name of the simulated site.")] = "plant-1",
        seed: Annotated[bool, typer.Option(help="Create the example tasks.")] = True,
    ) -> None:
        """Run TME with simulated machines in one process; Ctrl-C stops it."""
        from tme.bus.registry import transport_problem
        from tme.cli.common import usage_error
        from tme.config import load_settings
        from tme.logs import configure_logging
        from tme.stack import LocalStack, StackConfig
        from tme.topics import name_problem

        # Checked first, as tme gateway checks its --site: the whole stack started (and
        # its data folder was made) before the site's agents refused the name.
        if (problem := name_problem(site)) is not None:
            usage_error(f"--site {site!r}: {problem}")
        if (problem := transport_problem(broker)) is not None:
            usage_error(f"--broker: {problem}")  # it ended in the settings' traceback
        settings = load_settings()
        configure_logging(settings.logging)
        data_dir.mkdir(parents=True, exist_ok=True)
        profiles = _profiles_dir()
        config = StackConfig(
            database_url=f"sqlite:///{data_dir.resolve()}/tme.db",
            state_dir=data_dir.resolve() / "state",
            profiles_dir=profiles,
            site=site,
            bus_url=broker,
            mqtt_url=mqtt,
            http_host=host,
            http_port=settings.http.port if port is None else port,
            dashboard=True,
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with LocalStack(config) as stack:
            if seed:
                seed_examples(stack.url, site, stack.token)
            _print_welcome(stack)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
            console.print("stopping TME demo...")
        console.print("stopped.")


def _profiles_dir() -> Path:
    """The example device profiles: in $TME_CONFIG_DIR when set, else in ./configs, else
    in the configs folder of the checkout TME is installed from (`make demo` installs
    it editable), so the demo also starts from another folder."""
    import os

    if os.environ.get("TME_CONFIG_DIR"):
        bases = [Path(os.environ["TME_CONFIG_DIR"])]
    else:
        bases = [Path("configs"), Path(__file__).resolve().parents[2] / "configs"]
    for base in bases:
        if (base / "profiles" / "pump.yaml").is_file():
            return (base / "profiles").resolve()
    from tme.errors import ConfigError

    raise ConfigError(
        f"device profiles not found in {(bases[0] / 'profiles').resolve()}: run `tme demo` "
        "from the TME folder or set TME_CONFIG_DIR to the configs folder",
        key="profiles",
    )


def _print_welcome(stack: object) -> None:
    url = getattr(stack, "url", "")
    mqtt = getattr(stack, "mqtt_url", "")
    password = getattr(stack, "admin_password", "")
    token = getattr(stack, "token", "")
    skid_a = getattr(stack, "agent_files", {}).get("skid-a", "AGENT.yaml")
    login = (
        f"user admin, password {password} (shown only now)"
        if password
        else "user admin, with the password printed when this database was made"
    )
    console.print(
        f"""
[bold green]TME demo is running[/]
  dashboard and API  {url}/
  API docs           {url}/docs (once signed in on the dashboard, or with the token)
  MQTT broker        {mqtt}
  log in             {login}
  API token          {token}
  try:               curl -H "Authorization: Bearer $TME_TOKEN" {url}/tasks/
                     TME_TOKEN={token} tme task list --url {url}
  lock pump1 out     tme agent lock pump1 --reason "seal replacement" -c {skid_a}
                     (tme agent unlock pump1 -c ... hands it back)
  stop pump1 now     TME_TOKEN={token} tme device stop pump1 --reason test --url {url}
                     (tme device resume pump1 --reason ... lifts it; pump1 starts only
                     while tank1 is below 95 %: its interlock, in that config file)
  check a task       TME_TOKEN={token} tme task check ID --url {url}
                     (its agent says what it would do now; nothing is written)
Ctrl-C stops it.
""",
        highlight=False,
        soft_wrap=True,
    )
