"""/api/v1/auth: log in (a session token and cookie), log out, and who am I.

Login is limited per username and per client address; a wrong username and a
wrong password get the same answer, and both are written to the audit log.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from tme.admin_schemas import LoginRequest, PrincipalPublic, SessionPublic
from tme.controller.api.change_commit import ChangeDep, commit_with_row
from tme.controller.api.deps import PrincipalDep, SessionDep
from tme.controller.api.enforce import client_of, record_refusal
from tme.controller.api.errors import error_response
from tme.controller.services import audit
from tme.controller.services.roles import Principal
from tme.controller.services.sessions import (
    clear_session_cookie,
    set_session_cookie,
    start_session,
)
from tme.controller.services.tokens import revoke_token
from tme.controller.services.users import authenticate, get_user
from tme.errors import AuthError, Conflict
from tme.schemas import ErrorResponse

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


def _public(principal: Principal) -> PrincipalPublic:
    return PrincipalPublic(
        username=principal.username,
        role=principal.role.value,
        sites=list(principal.sites),
        token_kind=principal.token_kind,
    )


@router.post(
    "/login",
    response_model=SessionPublic,
    responses={401: {"model": ErrorResponse}, 429: {"model": ErrorResponse}},
)
def login(
    body: LoginRequest, request: Request, response: Response, session: SessionDep
) -> SessionPublic | JSONResponse:
    state = request.app.state
    client = client_of(request.scope)
    wait = state.login_limiter.allow(body.username, client)
    if wait is not None:
        record_refusal(request, "auth.login_limited", actor=body.username[:64])
        retry = str(max(1, int(wait + 0.999)))
        return error_response(
            429,
            "too_many_requests",
            "too many login attempts; wait a minute",
            {"retry_after_s": int(retry)},
            {"Retry-After": retry},
        )
    try:
        principal = authenticate(session, body.username, body.password)
    except AuthError:
        record_refusal(request, "auth.login_failed", actor=body.username[:64])
        raise
    # The chain locked before the session's token is written (its password checked,
    # the slow part, before), and the token committed with its row, or neither.
    audit.lock_chain(session.connection())
    user = get_user(session, principal.username)
    new = start_session(session, user, state.session_key, state.settings.auth.session_ttl_hours)
    row = audit.row_fields("auth.login", actor=user.username, client=client)
    commit_with_row(session, state.engine, row)
    set_session_cookie(response, new, secure=request.url.scheme == "https")
    return SessionPublic(
        **_public(principal).model_dump(), token=new.token, expires_at=new.expires_at
    )


@router.post("/logout", status_code=204, response_class=Response)
def logout(session: SessionDep, change: ChangeDep, principal: PrincipalDep) -> Response:
    """End this session (its token is revoked) and clear the cookie. An API token is
    no session: it is refused (409), where a 204 told a script its token was revoked
    while it stayed valid."""
    if principal.token_kind != "session" or principal.token_id is None:
        raise Conflict(
            "an API token is not a session and stays valid: revoke it with"
            f" `tme token revoke {principal.token_id}`",
            details={"token_id": principal.token_id, "token_kind": principal.token_kind},
        )
    revoke_token(session, principal.token_id)
    change.commit(204)
    response = Response(status_code=204)
    clear_session_cookie(response)
    return response


@router.get("/me", response_model=PrincipalPublic)
def me(principal: PrincipalDep) -> PrincipalPublic:
    return _public(principal)
