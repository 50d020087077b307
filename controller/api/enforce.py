"""Authentication and authorisation of every request, in one place.

An ASGI middleware, so it sees every route: API routes, the documentation pages
and whatever is mounted later. It finds the route the request will reach, looks
up the permission the route declared (controller/api/policy.py) and refuses
before the route runs: no or bad credentials 401, a role without the right 403,
a route that declared nothing 403 for everyone. The principal it admits is put
in `request.state.principal` for the site checks the routes make. Every change is
written to the audit log with its outcome: in the change's own transaction, committed
with it (change_commit.py, and a task create's group commit), or, for a request that
committed nothing (refused, failed), once its response is out.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from typing import Any, NoReturn

from fastapi.routing import RouteContext, iter_route_contexts
from sqlalchemy.exc import OperationalError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tme.controller.api.body_guard import body_refusal, takes_no_body
from tme.controller.api.errors import error_response
from tme.controller.api.media_type import media_refusal
from tme.controller.api.nul_guard import nul_refusal
from tme.controller.api.policy import COOKIE_METHODS, COOKIE_PATHS, permission_for
from tme.controller.api.principal_cache import PrincipalCache
from tme.controller.api.query_guard import unknown_query_refusal
from tme.controller.api.slash_guard import slash_refusal
from tme.controller.services import audit
from tme.controller.services.login_limit import RefusalAudit
from tme.controller.services.roles import Permission, Principal
from tme.controller.services.sessions import SESSION_COOKIE, token_of_cookie
from tme.controller.services.tokens import resolve_token
from tme.controller.store.db import session_scope
from tme.controller.store.read_only import refuses_writes
from tme.errors import AuthError

log = logging.getLogger("tme.auth")

DB_DOWN = "the database is unavailable, so credentials cannot be checked"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def find_route(routes: list[BaseRoute], scope: Scope) -> tuple[RouteContext | None, bool]:
    """The route the router will dispatch to, and whether the method matched (else 405).

    Included routers are walked to their routes, each with its full path.
    """
    partial = None
    for route in iter_route_contexts(routes):
        match, _child = route.matches(scope)
        if match == Match.FULL:
            return route, True
        if match == Match.PARTIAL and partial is None:
            partial = route
    return partial, False


def bearer_token(request: HTTPConnection) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return value.strip() or None


def record_refusal(
    request: HTTPConnection,
    action: str,
    *,
    actor: str = "",
    target: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    """Audit a refused credential, within its client's budget (RefusalAudit): past it,
    refusals are counted and the count goes in the client's next audited one."""
    client = client_of(request.scope)
    budget: RefusalAudit | None = getattr(request.app.state, "refusal_audit", None)
    unrecorded = budget.admit(client) if budget is not None else 0
    if unrecorded is None:
        return
    details = dict(details or {})
    if unrecorded:
        details["unrecorded_before"] = unrecorded
    audit.record(
        request.app.state.engine,
        action,
        actor=actor,
        target=target,
        outcome="refused",
        client=client,
        details=details,
    )


def client_of(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


DOCS_PAGES = ("/docs", "/redoc")  # the API's own pages, read by people in a browser


def _browser_wants_docs(request: HTTPConnection, method: str) -> bool:
    """A browser (it asks for HTML) opening the API's documentation pages."""
    return (
        method == "GET"
        and request.url.path in DOCS_PAGES
        and "text/html" in request.headers.get("accept", "")
    )


class Enforce:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request = HTTPConnection(scope)
        state = request.app.state
        # A slash sent as %2F inside a name is answered before the route the decoded path
        # names is looked up: that route, and its permission, are not the one asked for.
        misrouted = slash_refusal(scope, request.app.router.routes)
        if misrouted is not None:
            await misrouted(scope, receive, send)
            return
        route, method_ok = find_route(request.app.router.routes, scope)
        method = str(scope.get("method", "GET"))
        needed = permission_for(route, method) if route is not None and method_ok else None
        if needed is Permission.public:
            await self._forward(scope, receive, send, route)
            return
        cache: PrincipalCache | None = getattr(state, "principals", None)
        token = bearer_token(request)
        cached = cache.get(token) if cache is not None and token else None
        try:
            principal = cached or await self._authenticated(request, method, token, cache)
        except AuthError as exc:
            if cache is not None and token:
                cache.forget(token)
            sign_in = getattr(state, "sign_in_path", None)  # set with the dashboard
            if sign_in and token is None and _browser_wants_docs(request, method):
                # a person opening /docs: to the sign-in page, and back here after it
                to = f"{sign_in}?next={request.url.path}"
                await RedirectResponse(to, 303)(scope, receive, send)
                return
            await self._refuse(scope, receive, send, 401, exc.message, route)
            return
        except OperationalError:
            known = None
            if needed is Permission.health_read and cache is not None and token:
                known = cache.last_known(token)  # /metrics through the outage
            if known is None:
                log.error("database unavailable: credentials cannot be checked")
                retry = {"Retry-After": "5"}
                unavailable = error_response(503, "unavailable", DB_DOWN, None, retry)
                await unavailable(scope, receive, send)
                return
            principal = known
        if route is not None and method_ok:
            if needed is None:
                log.error("route %s declares no permission: refused", getattr(route, "path", ""))
                await self._refuse(
                    scope, receive, send, 403, "this route is closed", route, principal
                )
                return
            if not principal.can(needed):
                message = f"your role ({principal.role}) may not do this ({needed})"
                await self._refuse(scope, receive, send, 403, message, route, principal)
                return
        state_of_scope = scope.setdefault("state", {})
        state_of_scope["principal"] = principal
        # A stream outlives its request: it checks the credentials again with this (on
        # the thread pool; raises AuthError once they are revoked, expired or disabled).
        state_of_scope["authenticate"] = functools.partial(self._authenticate, request, method)
        if method in SAFE_METHODS or route is None or not method_ok or state.engine is None:
            await self._forward(scope, receive, send, route)
            return
        await self._audited(scope, receive, send, principal, route, needed)

    async def _forward(
        self, scope: Scope, receive: Receive, send: Send, route: RouteContext | None
    ) -> None:
        """Pass the request on to its route, unless a string of its query or path holds
        a NUL (nul_guard: a 422 naming the parameter), its query names a parameter the
        route does not take (query_guard: a 422 naming it), its body says it is not
        JSON (media_type: a 415) or holds something for a route that takes no body
        (body_guard: a 422 naming it), answered here for every route."""
        refusal = (
            nul_refusal(scope, route)
            or unknown_query_refusal(scope, route)
            or media_refusal(scope, route)
        )
        if refusal is None and route is not None and takes_no_body(scope, route):
            refusal, receive = await body_refusal(scope, receive, route)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await refusal(scope, receive, send)

    async def _authenticated(
        self,
        request: HTTPConnection,
        method: str,
        token: str | None,
        cache: PrincipalCache | None,
    ) -> Principal:
        """Resolve the credentials on the thread pool; keep a bearer token's principal."""
        resolved_at = time.monotonic()
        principal = await run_in_threadpool(self._authenticate, request, method)
        if cache is not None and token:
            cache.put(token, principal, resolved_at)
        return principal

    def _authenticate(self, request: HTTPConnection, method: str) -> Principal:
        """The principal of a bearer token, else of a session cookie (reads only)."""
        state = request.app.state
        if request.headers.get("authorization") is not None:
            token = bearer_token(request)
            if token is None:
                self._refused(request, "authorization header", "use Authorization: Bearer <token>")
            return self._resolve(request, token, "bearer token")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie is None:
            raise AuthError("authentication required: send Authorization: Bearer <token>")
        if method not in COOKIE_METHODS and request.url.path not in COOKIE_PATHS:
            # what a page of another site can make a logged-in browser send
            self._refused(
                request,
                "session cookie",
                "a session cookie only reads; changes need a bearer token",
            )
        origin = request.headers.get("origin")
        if origin and origin.split("://", 1)[-1] != request.headers.get("host"):
            self._refused(request, "session cookie", "cross-site request refused")
        ttl_s = int(state.settings.auth.session_ttl_hours) * 3600
        try:
            token = token_of_cookie(cookie, state.session_key, ttl_s)
        except AuthError as exc:
            self._audit_refusal(request, "session cookie", exc)
            raise
        return self._resolve(request, token, "session cookie")

    def _resolve(self, request: HTTPConnection, token: str, kind: str) -> Principal:
        engine = request.app.state.engine
        try:
            try:
                with session_scope(engine) as session:
                    return resolve_token(session, token)
            except OperationalError as exc:
                if not refuses_writes(exc):
                    raise
            # A read-only database (a standby, a failover under way) still serves reads:
            # the credentials are read as ever, only the token's last-use stamp waits.
            with Session(engine) as session:
                return resolve_token(session, token)
        except AuthError as exc:
            self._audit_refusal(request, kind, exc)
            raise

    def _refused(self, request: HTTPConnection, kind: str, reason: str) -> NoReturn:
        """Refuse a credential presented the wrong way, audited as a bad token is."""
        exc = AuthError(reason)
        self._audit_refusal(request, kind, exc)
        raise exc

    def _audit_refusal(self, request: HTTPConnection, kind: str, exc: AuthError) -> None:
        details = {"reason": exc.message, "credential": kind, "path": request.url.path}
        if isinstance(exc.details, dict):
            details.update(exc.details)
        target = f"{request.scope.get('method', 'GET')} {request.url.path}"
        record_refusal(request, "auth.token_refused", target=target, details=details)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        message: str,
        route: RouteContext | None,
        principal: Principal | None = None,
    ) -> None:
        headers = {"WWW-Authenticate": 'Bearer realm="tme"'} if status == 401 else None
        code = "unauthorized" if status == 401 else "forbidden"
        if principal is not None:
            await run_in_threadpool(
                audit.record,
                HTTPConnection(scope).app.state.engine,
                "access.refused",
                actor=principal.username,
                target=f"{scope.get('method', 'GET')} {scope['path']}",
                outcome="refused",
                client=client_of(scope),
                details={"reason": message},
            )
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await error_response(status, code, message, None, headers)(scope, receive, send)

    async def _audited(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        route: RouteContext,
        needed: Permission | None,
    ) -> None:
        """Run the route, then record the change with its outcome, unless the route
        committed the row with the change itself (audit.ChangeAudit)."""
        seen: dict[str, Any] = {"body": b"", "status": 500, "location": ""}
        # The whole body, which the size limit outside bounds: a body cut here told no
        # field, so a change padded past a cut (a status report's long log) hid its fields.
        limit = int(HTTPConnection(scope).app.state.settings.http.max_body_bytes)
        pending = audit.ChangeAudit(
            action=f"{needed or 'change'}:{getattr(route, 'name', '')}",
            actor=principal.username,
            target=f"{scope['method']} {scope['path']}",
            client=client_of(scope),
            token_id=principal.token_id,
            body_summary=lambda: _body_summary(seen["body"], limit),
        )
        scope.setdefault("state", {})["change_audit"] = pending

        async def tap_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request" and len(seen["body"]) <= limit:
                seen["body"] += message.get("body", b"")
            return message

        async def tap_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                for key, value in message.get("headers", []):
                    if key == b"location":
                        seen["location"] = value.decode("latin-1")
            await send(message)

        try:
            await self._forward(scope, tap_receive, tap_send, route)
        finally:
            if not pending.written or _failed_after_commit(pending, int(seen["status"])):
                await run_in_threadpool(self._record_change, scope, pending, seen)

    def _record_change(
        self, scope: Scope, pending: audit.ChangeAudit, seen: dict[str, Any]
    ) -> None:
        """The row of a change that committed none (it changed nothing), or a second one
        saying that a change committed with its row then failed (its answer an error)."""
        more = {"committed_as": pending.written_status} if pending.written else None
        try:
            fields = pending.fields(int(seen["status"]), seen["location"], more)
            audit.record(HTTPConnection(scope).app.state.engine, **fields)
        except Exception:  # the change stands; a lost audit row is logged loudly
            log.exception("could not write the audit row of %s %s", scope["method"], scope["path"])


def _failed_after_commit(pending: audit.ChangeAudit, status: int) -> bool:
    """Whether a route answered an error once its change was committed with a row that
    says it succeeded (a second commit failed, or the answer could not be made)."""
    return pending.written and status >= 400 and pending.written_status < 400


def _body_summary(body: bytes, limit: int) -> dict[str, Any]:
    """Which fields a change set (and a status report's word), never the whole body."""
    if not body or len(body) > limit:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than Python recurses
        return {}
    if not isinstance(data, dict):
        return {}
    summary: dict[str, Any] = {"fields": sorted(str(k) for k in data)[:50]}
    if isinstance(data.get("status"), str):
        summary["reported_status"] = data["status"][:16]
    return summary
