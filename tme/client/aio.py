"""`tme.AsyncClient`: the asyncio twin of `tme.Client`.

Same calls, same errors, same results (all built in `tme.client.calls`); only
sending, iterating and pausing are awaited here.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tme.client import calls, fleet_calls
from tme.client.audit import AsyncAudit
from tme.client.auth import AsyncAuth
from tme.client.base import (
    Connection,
    WaitDeadline,
    check_http_client,
    request_timeout,
    shared_ssl_context,
)
from tme.client.notifications import AsyncNotifications
from tme.client.rollouts import AsyncRollouts
from tme.fleet_schemas import (
    AgentPublic,
    DevicePublic,
    DeviceStopped,
    DeviceValues,
    SitePublic,
    SiteStopped,
)
from tme.schemas import (
    Page,
    ResourcePublic,
    RunDetail,
    RunPublic,
    TaskCreate,
    TaskPublic,
    TriggerFired,
    WorkflowCanceled,
)

T = TypeVar("T")


class AsyncClient:
    """See `tme.Client`; pass `http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app),
    base_url=...)` to talk to an app in-process."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        check_http_client(http_client, awaited=True)
        self.connection = Connection.resolve(url, token, http_client)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(
            timeout=request_timeout(timeout), verify=shared_ssl_context()
        )
        self.tasks = AsyncTasks(self)
        self.runs = AsyncRuns(self)
        self.fleet = AsyncFleet(self)
        self.triggers = AsyncTriggers(self)
        self.rollouts = AsyncRollouts(self)
        self.auth = AsyncAuth(self)
        self.audit = AsyncAudit(self)
        self.notifications = AsyncNotifications(self)

    @property
    def url(self) -> str:
        return self.connection.url

    async def send(self, call: calls.Call[T]) -> T:
        with self.connection.translate_errors():
            response = await self._http.request(**self.connection.request_args(call))
        return call.parse(response)

    async def iterate(self, call: calls.Call[Page[T]]) -> AsyncGenerator[T, None]:
        next_call: calls.Call[Page[T]] | None = call
        while next_call is not None:
            page = await self.send(next_call)
            for item in page.items:
                yield item
            next_call = next_call.next_page(page.next_cursor)

    async def health(self) -> dict[str, Any]:
        return await self.send(calls.health())

    async def ready(self) -> dict[str, Any]:
        return await self.send(calls.ready())

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class AsyncTasks:
    """`client.tasks` of AsyncClient; see `tme.client.sync.Tasks` for each method."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def create(
        self,
        task: TaskCreate | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> TaskPublic:
        return await self._client.send(calls.create_task(task, fields, idempotency_key))

    async def create_many(
        self, tasks: Iterable[TaskCreate | Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> list[TaskPublic]:
        return await self._client.send(calls.create_tasks(tasks, idempotency_key))

    async def get(self, task_id: int) -> TaskPublic:
        return await self._client.send(calls.get_task(task_id))

    def list(
        self,
        status: str | None = None,
        site: str | None = None,
        agent: str | None = None,
        op: str | None = None,
        search: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[TaskPublic]:
        """`async for task in client.tasks.list(...)`: every matching task, all pages."""
        filters = {"status": status, "site": site, "agent": agent, "op": op, "search": search}
        return self._client.iterate(calls.list_tasks(page_size, **filters))

    async def update(
        self, task_id: int, *, if_match: int | None = None, **fields: Any
    ) -> TaskPublic:
        return await self._client.send(calls.update_task(task_id, fields, if_match))

    async def report(
        self,
        task_id: int,
        status: str,
        log: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> TaskPublic:
        return await self._client.send(calls.report_task(task_id, status, log, details))

    async def delete(self, task_id: int) -> None:
        await self._client.send(calls.delete_task(task_id))

    async def wait(self, task_id: int, timeout: float = 60.0, poll_s: float = 0.2) -> TaskPublic:
        """Return the task once its status is final and settled: TME has acted on it, so
        no automatic retry is on its way (docs/api.md). Raise TimeoutError after `timeout` s."""
        deadline = WaitDeadline(task_id, timeout, poll_s)
        while not deadline.done(task := await self.get(task_id)):
            await asyncio.sleep(deadline.pause())  # polling interval of a deadline wait
        return task

    def runs(self, task_id: int, page_size: int = 100) -> AsyncIterator[RunPublic]:
        return self._client.iterate(calls.list_runs(task_id, page_size))

    async def run(self, task_id: int) -> RunPublic:
        return await self._client.send(calls.run_task(task_id))

    async def check(self, task_id: int) -> RunPublic:
        return await self._client.send(calls.check_task(task_id))

    async def resources(self) -> builtins.list[ResourcePublic]:
        return await self._client.send(calls.list_resources())

    async def pause(self, task_id: int) -> TaskPublic:
        return await self._client.send(calls.pause_task(task_id))

    async def resume(self, task_id: int) -> TaskPublic:
        return await self._client.send(calls.resume_task(task_id))


class AsyncRuns:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def get(self, run_id: str) -> RunDetail:
        return await self._client.send(calls.get_run(run_id))

    async def cancel(self, run_id: str, force: bool = False) -> RunPublic:
        return await self._client.send(calls.cancel_run(run_id, force))

    async def retry(self, run_id: str) -> RunPublic:
        return await self._client.send(calls.retry_run(run_id))

    async def workflow(self, workflow_id: str) -> list[RunPublic]:
        return await self._client.send(calls.workflow_runs(workflow_id))

    async def cancel_workflow(self, workflow_id: str, force: bool = False) -> WorkflowCanceled:
        return await self._client.send(calls.cancel_workflow(workflow_id, force))


class AsyncTriggers:
    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def fire(self, name: str) -> TriggerFired:
        return await self._client.send(calls.fire_trigger(name))


class AsyncFleet:
    """`client.fleet`: sites, agents (online state from presence) and devices."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client

    async def sites(self) -> list[SitePublic]:
        return await self._client.send(fleet_calls.list_sites())

    async def agents(
        self, site: str | None = None, online: bool | None = None
    ) -> list[AgentPublic]:
        return await self._client.send(fleet_calls.list_agents(site, online))

    async def devices(
        self, site: str | None = None, agent: str | None = None
    ) -> list[DevicePublic]:
        return await self._client.send(fleet_calls.list_devices(site, agent))

    async def values(
        self, device: str, site: str | None = None, agent: str | None = None
    ) -> DeviceValues:
        """Each point of `device` with its latest value, from succeeded runs."""
        return await self._client.send(fleet_calls.device_values(device, site, agent))

    async def stop(
        self, device: str, reason: str, site: str | None = None, agent: str | None = None
    ) -> DeviceStopped:
        """Stop `device` now (see `Client.fleet.stop`)."""
        return await self._client.send(fleet_calls.stop_device(device, reason, site, agent))

    async def resume(
        self, device: str, reason: str, site: str | None = None, agent: str | None = None
    ) -> DeviceStopped:
        """Lift a stop of `device` (see `Client.fleet.resume`)."""
        return await self._client.send(
            fleet_calls.stop_device(device, reason, site, agent, "resume")
        )

    async def stop_site(self, site: str, reason: str, agent: str | None = None) -> SiteStopped:
        """Stop every device of `site` with a safe value (see `Client.fleet.stop_site`)."""
        return await self._client.send(fleet_calls.stop_site(site, reason, agent))
