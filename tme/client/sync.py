"""`tme.Client`: the blocking Python SDK of the TME REST API."""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import httpx

from tme.client import calls, fleet_calls
from tme.client.audit import Audit
from tme.client.auth import Auth
from tme.client.base import (
    Connection,
    WaitDeadline,
    check_http_client,
    request_timeout,
    shared_ssl_context,
)
from tme.client.notifications import Notifications
from tme.client.rollouts import Rollouts
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


class Client:
    """A connection to one TME server.

    `url` and `token` fall back to TME_URL and TME_TOKEN (then http://127.0.0.1:8000);
    `token=""` sends none.
    Pass `http_client` (any httpx.Client, e.g. FastAPI's TestClient) to talk to an
    app in-process; a client built here is closed by `close()`, a given one is not.
    Errors are the typed ones of `tme.errors`; an unreachable server raises
    `TransportError`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        timeout: float | None = 10.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        check_http_client(http_client, awaited=False)
        self.connection = Connection.resolve(url, token, http_client)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(
            timeout=request_timeout(timeout), verify=shared_ssl_context()
        )
        self.tasks = Tasks(self)
        self.runs = Runs(self)
        self.fleet = Fleet(self)
        self.triggers = Triggers(self)
        self.rollouts = Rollouts(self)
        self.auth = Auth(self)
        self.audit = Audit(self)
        self.notifications = Notifications(self)

    @property
    def url(self) -> str:
        return self.connection.url

    def send(self, call: calls.Call[T]) -> T:
        """Send one call and return its parsed result (the low-level entry point)."""
        with self.connection.translate_errors():
            response = self._http.request(**self.connection.request_args(call))
        return call.parse(response)

    def iterate(self, call: calls.Call[Page[T]]) -> Iterator[T]:
        """Yield the items of every page of a listing, fetching pages as they are needed."""
        next_call: calls.Call[Page[T]] | None = call
        while next_call is not None:
            page = self.send(next_call)
            yield from page.items
            next_call = next_call.next_page(page.next_cursor)

    def health(self) -> dict[str, Any]:
        """The server's liveness answer (GET /healthz)."""
        return self.send(calls.health())

    def ready(self) -> dict[str, Any]:
        """The server's readiness answer (GET /readyz): raises Unavailable when not ready."""
        return self.send(calls.ready())

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Tasks:
    """`client.tasks`: define, find, change, report on and delete tasks."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self,
        task: TaskCreate | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> TaskPublic:
        """Create a task from a TaskCreate (or a dict of its fields) and/or its fields as
        keywords (name=..., op=..., ...), which override theirs.

        With `idempotency_key`, repeating the call returns the same task instead
        of a second one; reusing the key with another body raises Conflict.
        """
        return self._client.send(calls.create_task(task, fields, idempotency_key))

    def create_many(
        self,
        tasks: Iterable[TaskCreate | Mapping[str, Any]],
        *,
        idempotency_key: str | None = None,
    ) -> list[TaskPublic]:
        """Create up to 500 tasks in one request and one transaction: all or none.

        An error names the item (`tasks.<index>`). With `idempotency_key`, repeating
        the call returns the same tasks.
        """
        return self._client.send(calls.create_tasks(tasks, idempotency_key))

    def get(self, task_id: int) -> TaskPublic:
        return self._client.send(calls.get_task(task_id))

    def list(
        self,
        status: str | None = None,
        site: str | None = None,
        agent: str | None = None,
        op: str | None = None,
        search: str | None = None,
        page_size: int = 100,
    ) -> Iterator[TaskPublic]:
        """Iterate over every matching task, across all pages."""
        filters = {"status": status, "site": site, "agent": agent, "op": op, "search": search}
        return self._client.iterate(calls.list_tasks(page_size, **filters))

    def update(self, task_id: int, *, if_match: int | None = None, **fields: Any) -> TaskPublic:
        """Change some fields of a task (the fields of TaskUpdate). With `if_match`, the
        `revision` of the task as read: raises PreconditionFailed if it changed since."""
        return self._client.send(calls.update_task(task_id, fields, if_match))

    def report(
        self,
        task_id: int,
        status: str,
        log: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> TaskPublic:
        """Report an external task's progress: status is started, complete or fail."""
        return self._client.send(calls.report_task(task_id, status, log, details))

    def delete(self, task_id: int) -> None:
        self._client.send(calls.delete_task(task_id))

    def wait(self, task_id: int, timeout: float = 60.0, poll_s: float = 0.2) -> TaskPublic:
        """Return the task once its status is final and settled: TME has acted on it, so
        no automatic retry is on its way (docs/api.md). Raise TimeoutError after `timeout` s."""
        deadline = WaitDeadline(task_id, timeout, poll_s)
        while not deadline.done(task := self.get(task_id)):
            time.sleep(deadline.pause())  # polling interval of a deadline wait
        return task

    def runs(self, task_id: int, page_size: int = 100) -> Iterator[RunPublic]:
        """Iterate over a task's runs, newest first."""
        return self._client.iterate(calls.list_runs(task_id, page_size))

    def run(self, task_id: int) -> RunPublic:
        """Start a run now (the task's overlap policy applies)."""
        return self._client.send(calls.run_task(task_id))

    def check(self, task_id: int) -> RunPublic:
        """Ask the task's agent what it would do now, without running it (a dry run): the
        run of a new task `check <name>`. It ends succeeded (it would run: `reason` says
        what it would do), rejected (it would be refused: why) or failed (what the checks
        need could not be read); nothing is written or sent."""
        return self._client.send(calls.check_task(task_id))

    def resources(self) -> builtins.list[ResourcePublic]:
        """The exclusive resources your tasks name: the run holding each (None: free) and
        the runs waiting for it, next first."""
        return self._client.send(calls.list_resources())

    def pause(self, task_id: int) -> TaskPublic:
        """Stop the task's automatic starts (schedule, trigger, dependencies, planned
        retries) until `resume`; `run` and `runs.retry` still start it."""
        return self._client.send(calls.pause_task(task_id))

    def resume(self, task_id: int) -> TaskPublic:
        """Let its schedule, trigger and dependencies start it again; slots during the
        pause are not owed, a planned retry whose time came during it starts now (or
        once the run of the task going on finishes, as its overlap policy says)."""
        return self._client.send(calls.resume_task(task_id))


class Runs:
    """`client.runs`: one run with its state changes and log."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def get(self, run_id: str) -> RunDetail:
        return self._client.send(calls.get_run(run_id))

    def cancel(self, run_id: str, force: bool = False) -> RunPublic:
        """Cancel a queued run at once, or ask the agent to stop a running one."""
        return self._client.send(calls.cancel_run(run_id, force))

    def retry(self, run_id: str) -> RunPublic:
        """Run a finished step again in its workflow run, as the task's overlap policy
        allows (as for run now: a refused retry is answered as a `skipped` run). A
        planned automatic retry starts now instead, or waits for the run going on."""
        return self._client.send(calls.retry_run(run_id))

    def workflow(self, workflow_id: str) -> list[RunPublic]:
        """Every run of one workflow run, oldest first."""
        return self._client.send(calls.workflow_runs(workflow_id))

    def cancel_workflow(self, workflow_id: str, force: bool = False) -> WorkflowCanceled:
        """Stop a workflow run: cancel each of its runs still going (as `cancel` does) and
        skip its steps not started yet, `failure` and `any` ones included; its runs are
        not retried. Conflict (409) when it is already over."""
        return self._client.send(calls.cancel_workflow(workflow_id, force))


class Triggers:
    """`client.triggers`: fire a named trigger, starting every task bound to it."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def fire(self, name: str) -> TriggerFired:
        return self._client.send(calls.fire_trigger(name))


class Fleet:
    """`client.fleet`: sites, agents (online state from presence) and devices."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def sites(self) -> list[SitePublic]:
        return self._client.send(fleet_calls.list_sites())

    def agents(self, site: str | None = None, online: bool | None = None) -> list[AgentPublic]:
        return self._client.send(fleet_calls.list_agents(site, online))

    def devices(self, site: str | None = None, agent: str | None = None) -> list[DevicePublic]:
        return self._client.send(fleet_calls.list_devices(site, agent))

    def values(
        self, device: str, site: str | None = None, agent: str | None = None
    ) -> DeviceValues:
        """Each point of `device` with its latest value, from succeeded runs."""
        return self._client.send(fleet_calls.device_values(device, site, agent))

    def stop(
        self, device: str, reason: str, site: str | None = None, agent: str | None = None
    ) -> DeviceStopped:
        """Stop `device` now: its unfinished runs are canceled and its agent writes its
        safe values; `client.runs.get(stopped.run_id)` says what was written, its
        `result["first_pass"]` as soon as the first writes are done, while the run may
        still hold them before writing them again (docs/api.md, "Following a stop")."""
        return self._client.send(fleet_calls.stop_device(device, reason, site, agent))

    def resume(
        self, device: str, reason: str, site: str | None = None, agent: str | None = None
    ) -> DeviceStopped:
        """Lift a stop of `device`: its agent takes changes again."""
        return self._client.send(fleet_calls.stop_device(device, reason, site, agent, "resume"))

    def stop_site(self, site: str, reason: str, agent: str | None = None) -> SiteStopped:
        """Stop every device of `site` (of `agent` only, when given) that has a safe value,
        at once, each as `stop` does; the answer names each device stopped with its stop's
        run (`client.runs.get(d.run_id)`, its `result["first_pass"]` as for `stop`) and
        whether its agent is online, and the devices left alone with why."""
        return self._client.send(fleet_calls.stop_site(site, reason, agent))
