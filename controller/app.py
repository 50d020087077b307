"""The controller's FastAPI application.

`create_app(settings)` builds the app; nothing connects until its lifespan runs.
The engine is made (and the schema checked) at start-up, so a controller on an
out-of-date database refuses to start and says which command fixes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import iter_route_contexts
from sqlalchemy.engine import Engine

import tme
from tme.bus import Bus
from tme.controller import events_stream, metrics, notifications_api, reports_api
from tme.controller.api import errors, security
from tme.controller.api.limits import BodySizeLimit
from tme.controller.api.openapi_errors import document_errors
from tme.controller.api.principal_cache import PrincipalCache
from tme.controller.api.routes import fleet, health, legacy, rollouts, runs, scheduling, tasks
from tme.controller.observers import Observers
from tme.controller.readiness import Readiness, check_database, schema_check
from tme.controller.runtime import ControllerRuntime
from tme.controller.services import audit
from tme.controller.store.db import check_schema, make_engine

DESCRIPTION = """
TME stores tasks for machines at remote sites, runs them on schedule or when their
dependencies settle, and records every run. Every error has one shape:
`{"error": {"code", "message", "details"}}`.
"""


def create_app(
    settings: Any,
    *,
    engine: Engine | None = None,
    bus: Bus | None = None,
    runtime: bool = True,
    dashboard: bool = False,
    warm: bool = True,
) -> FastAPI:
    """Build the controller app.

    Pass `engine` or `bus` to share them (tests, the demo); `runtime=False` serves
    the API without dispatching to machines; `dashboard=True` mounts the NiceGUI
    dashboard at /ui (once per process: NiceGUI keeps one set of pages);
    `warm=False` leaves each route to be resolved by its first request (see `_warm`),
    for tests that start an app each and send it a few requests.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = app.state.engine is None
        if own_engine:
            database = settings.database
            app.state.engine = make_engine(
                database.url,
                echo=database.echo,
                pool_size=database.pool_size,
                tcp_timeout_s=database.tcp_timeout_s,
            )
        check_schema(app.state.engine)
        app.state.readiness.add("database", lambda: check_database(app.state.engine))
        app.state.readiness.add("schema", schema_check(lambda: app.state.engine))
        audit.use_key(app.state.engine, settings)
        moving = ControllerRuntime(settings, app.state.engine, bus) if runtime else None
        observers = Observers(app, settings)
        observers.start(moving)
        if moving is not None:
            moving.start()
            app.state.runtime = moving
            app.state.on_run_ready = moving.on_run_ready
            app.state.readiness.add("broker", moving.check_bus)
        if warm:
            await _warm(app)
        try:
            yield
        finally:
            if moving is not None:
                moving.stop()
            observers.stop()
            if own_engine:
                app.state.engine.dispose()

    app = FastAPI(title="TME", version=tme.__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.principals = PrincipalCache()
    app.state.readiness = Readiness()
    app.state.on_run_ready = None
    app.state.runtime = None
    errors.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.http.max_body_bytes)
    for router in (health.router, legacy.router, tasks.router, runs.router, fleet.router):
        app.include_router(router)
    app.include_router(scheduling.router)
    app.include_router(rollouts.router)
    for router in (events_stream.router, reports_api.router, notifications_api.router):
        app.include_router(router)
    app.include_router(metrics.router)
    if dashboard:
        from tme.ui.mount import mount_dashboard

        mount_dashboard(app, settings)
    security.install(app, settings)  # last: every route above is behind it
    if settings.http.cors_origins:  # outside it: a browser's preflight carries no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.http.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "If-Match"],
            expose_headers=["ETag", "Location", "Idempotent-Replayed", "Retry-After"],
            max_age=600,
        )
    document_errors(app)
    return app


async def _warm(app: FastAPI) -> None:
    """Do at start what the first requests would otherwise pay for: FastAPI resolves
    each route's dependencies when a request first walks past it, and the thread pool
    loads and starts with its first job. Eight requests arriving together just after a
    start took 50-80 ms each with this left to them, 30-55 ms without. It costs about
    0.1 s at each start."""
    list(iter_route_contexts(app.routes))
    await to_thread.run_sync(lambda: None)
