"""`tme controller` (serve the API) and `tme openapi` (export the OpenAPI document)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Annotated, Any

import typer

STARTUP_FAILURE = 3  # uvicorn's exit code for an app whose start-up failed


def serve_controller(
    settings: Any, *, host: str | None = None, port: int | None = None, app: Any = None
) -> None:
    """Serve the controller app with uvicorn until interrupted."""
    import uvicorn

    from tme.cli.common import cli_errors
    from tme.logs import configure_logging, get_logger
    from tme.stack import listening_socket

    configure_logging(settings.logging)
    if app is None:
        check_before_start(settings)
    # Bound before the app is built and started: a port in use is one line naming it (a
    # ConfigError), where the controller started in full, then logged uvicorn's bind error.
    with cli_errors():
        # `--port 0` asks the OS for a free port, as http.port 0 does: `port or ...` took
        # the setting's port instead
        sock = listening_socket(
            host or settings.http.host, settings.http.port if port is None else port
        )
    if app is None:
        from tme.controller.app import create_app

        app = create_app(settings, dashboard=True)
    bound_host, bound_port = sock.getsockname()[:2]
    get_logger("tme.controller").info(
        f"REST API on http://{bound_host}:{bound_port}/api/v1, dashboard at /ui"
    )  # uvicorn says where it listens only for an address it bound itself
    with sock:
        server = uvicorn.Server(uvicorn_config(app, settings))
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: its start-up failed, see the log


def uvicorn_config(app: Any, settings: Any) -> Any:
    """uvicorn's configuration of the controller: X-Forwarded-For and -Proto are taken
    from the proxies in http.trusted_proxies only (a request through a TLS-terminating
    proxy is then https: its session cookie is Secure, its client the real one)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=",".join(settings.http.trusted_proxies),
    )


def check_before_start(settings: Any) -> None:
    """Check the schema, so a stale one, a database that cannot be reached and a
    malformed URL each fail in one line, and the broker likewise."""
    from tme.cli.common import cli_errors, database_errors
    from tme.controller.store.db import check_schema, make_engine

    url = settings.database.url
    with cli_errors(), database_errors(url):
        engine = make_engine(url)
        try:
            check_schema(engine)
        finally:
            engine.dispose()
    with cli_errors():
        _check_broker(settings)


def _check_broker(settings: Any) -> None:
    """Open RabbitMQ once, so one that cannot be reached, or refuses the login, is one
    line naming it (it was a traceback of the app's failed start-up)."""
    broker = settings.broker.effective_url
    if broker.startswith("memory://"):
        return
    from tme.bus.amqp_admin import admin_channel, connection_parameters
    from tme.bus.options import BusOptions

    options = BusOptions(**settings.broker.bus_options())
    with admin_channel(connection_parameters(broker, options, "start-up check")):
        pass


def register(app: typer.Typer) -> None:
    @app.command("controller")
    def controller(
        host: Annotated[str | None, typer.Option(help="Bind address (http.host).")] = None,
        port: Annotated[
            int | None, typer.Option(min=0, max=65535, help="Port (http.port).")
        ] = None,
    ) -> None:
        """Serve the controller: REST API, dashboard (/ui), scheduler, dispatcher, events."""
        from tme.config import load_settings

        serve_controller(load_settings(), host=host, port=port)

    @app.command("openapi")
    def openapi() -> None:
        """Print the OpenAPI document of the REST API as JSON."""
        from tme.config import Settings
        from tme.controller.app import create_app

        sys.stdout.write(json.dumps(create_app(Settings()).openapi(), indent=2) + "\n")
