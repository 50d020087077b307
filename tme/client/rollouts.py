"""`client.rollouts` and its async twin: one device op run on many matching devices.

The calls are built here once (free of I/O, as in `tme.client.calls`); the sync and
async classes only send them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from tme.client.calls import (
    API,
    Call,
    _linked_page,
    _page_size,
    _parser,
    integer_id,
    request_body,
)
from tme.rollout_schemas import RolloutCreate, RolloutPreview, RolloutPublic
from tme.schemas import Page

if TYPE_CHECKING:
    from tme.client.aio import AsyncClient
    from tme.client.sync import Client

_rollout = _parser(RolloutPublic)
_preview = _parser(RolloutPreview)


RolloutGiven = RolloutCreate | Mapping[str, Any] | None


def _body(rollout: RolloutGiven, fields: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = request_body(RolloutCreate, rollout, fields).model_dump(
        mode="json", exclude_none=True
    )
    return body


def preview_rollout(rollout: RolloutGiven, fields: Mapping[str, Any]) -> Call[RolloutPreview]:
    return Call("POST", f"{API}/rollouts/preview", _preview, json=_body(rollout, fields))


def create_rollout(rollout: RolloutGiven, fields: Mapping[str, Any]) -> Call[RolloutPublic]:
    return Call("POST", f"{API}/rollouts", _rollout, json=_body(rollout, fields))


def _rollout_id(rollout_id: int) -> int:
    return integer_id(rollout_id, "rollout_id")


def get_rollout(rollout_id: int) -> Call[RolloutPublic]:
    return Call("GET", f"{API}/rollouts/{_rollout_id(rollout_id)}", _rollout)


_rollout_page = _linked_page(RolloutPublic)


def list_rollouts(
    site: str | None = None, state: str | None = None, page_size: int = 100
) -> Call[Page[RolloutPublic]]:
    params: dict[str, Any] = {"limit": _page_size(page_size)}
    params.update({k: v for k, v in (("site", site), ("state", state)) if v is not None})
    return Call("GET", f"{API}/rollouts", _rollout_page, params=params)


def cancel_rollout(rollout_id: int, force: bool = False) -> Call[RolloutPublic]:
    params = {"force": "true"} if force else {}
    path = f"{API}/rollouts/{_rollout_id(rollout_id)}/cancel"
    return Call("POST", path, _rollout, params=params)


class Rollouts:
    """`client.rollouts`: preview, start, follow and cancel rollouts (docs/rollouts.md)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def preview(self, rollout: RolloutGiven = None, **fields: Any) -> RolloutPreview:
        """The devices a rollout would run on and what the fleet checks say of each,
        storing nothing. Give a RolloutCreate or a dict of its fields, and/or its fields as
        keywords (which override theirs)."""
        return self._client.send(preview_rollout(rollout, fields))

    def create(self, rollout: RolloutGiven = None, **fields: Any) -> RolloutPublic:
        """Store the rollout and its tasks, and start its first `window` runs."""
        return self._client.send(create_rollout(rollout, fields))

    def get(self, rollout_id: int) -> RolloutPublic:
        return self._client.send(get_rollout(rollout_id))

    def list(
        self, site: str | None = None, state: str | None = None, page_size: int = 100
    ) -> Iterator[RolloutPublic]:
        """Iterate over every matching rollout, newest first, across all pages (of
        `page_size`, up to 1000), without their devices (`get` has them)."""
        return self._client.iterate(list_rollouts(site, state, page_size))

    def cancel(self, rollout_id: int, force: bool = False) -> RolloutPublic:
        """Start no more runs and cancel the ones going (`force`: at once)."""
        return self._client.send(cancel_rollout(rollout_id, force))


class AsyncRollouts:
    """`async_client.rollouts`: see `Rollouts`."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def preview(self, rollout: RolloutGiven = None, **fields: Any) -> RolloutPreview:
        return await self._client.send(preview_rollout(rollout, fields))

    async def create(self, rollout: RolloutGiven = None, **fields: Any) -> RolloutPublic:
        return await self._client.send(create_rollout(rollout, fields))

    async def get(self, rollout_id: int) -> RolloutPublic:
        return await self._client.send(get_rollout(rollout_id))

    def list(
        self, site: str | None = None, state: str | None = None, page_size: int = 100
    ) -> AsyncIterator[RolloutPublic]:
        """`async for rollout in client.rollouts.list(...)`: every matching one, all pages."""
        return self._client.iterate(list_rollouts(site, state, page_size))

    async def cancel(self, rollout_id: int, force: bool = False) -> RolloutPublic:
        return await self._client.send(cancel_rollout(rollout_id, force))
