"""Refuse cross-site requests to the dashboard.

The session cookie is SameSite=Strict, so another site's page cannot make the
browser send it; this also refuses, before NiceGUI sees them, requests and
websocket handshakes whose Origin is another site (a page that would drive an
open dashboard tab's connection).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


def cross_site(scope: Scope) -> bool:
    """A websocket or a change from another site; following a link here is fine."""
    if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD"):
        return False
    if _header(scope, b"sec-fetch-site") == "cross-site":
        return True
    origin = _header(scope, b"origin")
    if not origin:
        return False
    return origin.split("://", 1)[-1] != _header(scope, b"host")


class SameOriginOnly:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and cross_site(scope):
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 403,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"cross-site request refused"})
            return
        await self.app(scope, receive, send)
