"""Install access control on the controller app: enforcement, login state, routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tme.controller.api.enforce import Enforce
from tme.controller.api.routes import audit, auth
from tme.controller.services.login_limit import LoginLimiter, RefusalAudit
from tme.controller.services.sessions import signing_key


def install(app: FastAPI, settings: Any) -> None:
    """Call after the other middleware, so enforcement runs first on every request."""
    app.state.session_key = signing_key(settings)
    app.state.login_limiter = LoginLimiter(settings.auth.login_attempts_per_minute)
    app.state.refusal_audit = RefusalAudit()
    app.include_router(auth.router)
    app.include_router(audit.router)
    app.add_middleware(Enforce)
