"""`client.auth` and its async twin: log in, who a token acts as, log out.

Users and API tokens are made, listed, disabled and revoked on the controller's
database (`tme user ...`, `tme token ...`, docs/api.md): the REST API has no routes
for them, so neither has the SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tme.admin_schemas import LoginRequest, PrincipalPublic, SessionPublic
from tme.client.calls import API, Call, _no_content, _parser, validated

if TYPE_CHECKING:
    from tme.client.aio import AsyncClient
    from tme.client.sync import Client


def login(username: str, password: str) -> Call[SessionPublic]:
    body: LoginRequest = validated(LoginRequest, {"username": username, "password": password})
    return Call("POST", f"{API}/auth/login", _parser(SessionPublic), json=body.model_dump())


def me() -> Call[PrincipalPublic]:
    return Call("GET", f"{API}/auth/me", _parser(PrincipalPublic))


def logout() -> Call[None]:
    return Call("POST", f"{API}/auth/logout", _no_content)


class Auth:
    """`client.auth`: a session from a username and password, and who a token acts as."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def login(self, username: str, password: str) -> SessionPublic:
        """Start a session: its `token` is a bearer token for `tme.Client(token=...)`,
        valid until `expires_at`. AuthError (401) for a wrong username or password,
        BadRequest (429) after too many attempts."""
        return self._client.send(login(username, password))

    def me(self) -> PrincipalPublic:
        """Who this client's token acts as: username, role, sites, token_kind."""
        return self._client.send(me())

    def logout(self) -> None:
        """End this client's session (its token is revoked). An API token is no session:
        Conflict (409), and it stays valid."""
        self._client.send(logout())


class AsyncAuth:
    """`async_client.auth`: see `Auth`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def login(self, username: str, password: str) -> SessionPublic:
        return await self._client.send(login(username, password))

    async def me(self) -> PrincipalPublic:
        return await self._client.send(me())

    async def logout(self) -> None:
        await self._client.send(logout())
