"""Who is looking at a page: the principal of the dashboard session cookie.

The cookie is the one `POST /api/v1/auth/login` sets (signed, HttpOnly,
SameSite=Strict, with an expiry). Every page and every action resolves it again,
so logging out or disabling a user ends an open page's powers at once.
"""

from __future__ import annotations

from fastapi import Request

from tme.controller.services.roles import Principal
from tme.controller.services.sessions import SESSION_COOKIE, principal_of_cookie
from tme.errors import AuthError
from tme.ui.context import dashboard


def principal_of(cookie: str | None) -> Principal | None:
    if not cookie:
        return None
    board = dashboard()
    ttl_s = int(board.settings.auth.session_ttl_hours) * 3600
    try:
        with board.session() as session:
            return principal_of_cookie(session, cookie, board.session_key, ttl_s)
    except AuthError:
        return None


def current_principal(request: Request) -> Principal | None:
    """The principal of this page's request, or None (not signed in, expired, revoked)."""
    return principal_of(request.cookies.get(SESSION_COOKIE))


def page_of(request: Request) -> str:
    """The path and query of the page asked for: where to come back after signing in."""
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


class Viewer:
    """A page's principal, checked again before each action it offers."""

    def __init__(self, request: Request, principal: Principal) -> None:
        self._cookie = request.cookies.get(SESSION_COOKIE)
        self.principal = principal
        self.page = page_of(request)

    def signed_out(self) -> bool:
        """Whether the page's session ended (logged out, expired, the user disabled)."""
        return principal_of(self._cookie) is None

    def can(self, permission: str, site: str | None = None) -> bool:
        return self.principal.can(permission, site)

    def still(self, permission: str, site: str | None = None) -> Principal | None:
        """The principal again, when its session is still valid and allowed `permission`."""
        fresh = principal_of(self._cookie)
        if fresh is None or not fresh.can(permission, site):
            return None
        return fresh
