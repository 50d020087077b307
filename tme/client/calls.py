"""What each SDK call sends and how its answer is read, free of any I/O.

The sync and async clients differ only in how they send a request; everything
else (paths, query parameters, bodies, error translation, response models) lives
here once, so both clients behave the same by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from tme import states
from tme.config_errors import hide_url_password
from tme.errors import APIError, ValidationError, api_error_from_response
from tme.schemas import (
    Page,
    ResourcePublic,
    RunDetail,
    RunPublic,
    TaskBatchCreate,
    TaskBatchPublic,
    TaskCreate,
    TaskPublic,
    TaskUpdate,
    TriggerFired,
    WorkflowCanceled,
    check_trigger_name,
)

T = TypeVar("T")
API = "/api/v1"


@dataclass(frozen=True)
class Call(Generic[T]):
    """One HTTP request and the function that turns its response into a result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    page_param: str = "cursor"  # the query parameter a page's `next_cursor` goes back in

    def next_page(self, cursor: str | None) -> Call[T] | None:
        """The same listing call for the page after this one, or None at the end."""
        if not cursor:
            return None
        return replace(self, params={**self.params, self.page_param: cursor})


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def check(response: httpx.Response) -> None:
    """Raise the typed error (NotFound, Conflict, ValidationError, ...) of a failed call."""
    if response.is_success:
        return
    error = api_error_from_response(response.status_code, _body(response))
    if response.is_redirect:
        # A proxy sending http:// to https://, or to another host: the SDK follows no
        # redirect (a POST would arrive as a GET), so the error says where it leads.
        where = response.next_request.url if response.next_request else "?"
        error.message += (
            f" (redirected to {hide_url_password(str(where))}; the SDK follows no redirect:"
            " give the URL TME answers at)"
        )
        error.args = (error.message,)
    raise error


def _parser(model: type[pydantic.BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        check(response)
        return _read_as(model, _body(response), response)

    return parse


def _read_as(model: type[pydantic.BaseModel], body: Any, response: httpx.Response) -> Any:
    try:
        return model.model_validate(body)
    except pydantic.ValidationError as exc:
        # A 2xx answer that is not TME's: a wrong URL or a proxy page.
        why = f"{exc.error_count()} problem(s)"
        raise unexpected(response, why, details=_field_errors(exc)) from exc


def unexpected(response: httpx.Response, why: str, details: Any = None) -> APIError:
    """The error of a 2xx answer that is not TME's (another app at that URL), with the
    answer's own status and a code of its own: it was an APIError with status 500 and
    code internal_error, which no server had said."""
    error = APIError(f"unexpected answer from {_asked(response)}: {why}", details=details)
    error.status_code = response.status_code
    error.code = "unexpected_answer"
    return error


def _asked(response: httpx.Response) -> str:
    """The URL asked, without a password it may hold (a proxy's user:password@)."""
    return hide_url_password(str(response.request.url))


def _no_content(response: httpx.Response) -> None:
    check(response)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    """A JSON object as it is (the health answers): another app's page at the same path,
    a text or a list, is an APIError too, where `health()` raised ValueError or TypeError."""
    check(response)
    body = _body(response)
    if not isinstance(body, dict):
        raise unexpected(response, "not a JSON object")
    return body


def _field_errors(exc: pydantic.ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors in the API's 422 shape, worded as the API words them."""
    errors = []
    for err in exc.errors():
        message = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        errors.append(
            {"field": field, "message": message.removeprefix("Value error, "), "type": err["type"]}
        )
    return errors


def summarize(field_errors: list[dict[str, Any]]) -> str:
    """'a.b: message; c: message': one line naming every field that is wrong."""
    return "; ".join(f"{e.get('field') or 'body'}: {e.get('message', '')}" for e in field_errors)


def validated(model: type[pydantic.BaseModel], fields: Mapping[str, Any]) -> Any:
    """Build a request model, raising TME's ValidationError (same shape as the API's 422).

    Checking here gives the same answer the server would, without a round trip.
    """
    try:
        return model.model_validate(dict(fields))
    except pydantic.ValidationError as exc:
        errors = _field_errors(exc)
        raise ValidationError(f"invalid request: {summarize(errors)}", field_errors=errors) from exc


M = TypeVar("M", bound=pydantic.BaseModel)


def request_body(
    model: type[M], given: M | Mapping[str, Any] | None, fields: Mapping[str, Any]
) -> M:
    """The request model from `given` (the model, or a mapping of its fields, as
    `create_many` takes each task) and keyword `fields`, which override its fields. A
    dict given alone raised AttributeError ('dict' object has no attribute 'model_dump')."""
    if isinstance(given, model):
        if not fields:
            return given
        given = given.model_dump(exclude_unset=True)
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise TypeError(
            f"expected a {model.__name__} or a mapping of its fields, got {type(given).__name__}"
        )
    built: M = validated(model, {**given, **fields})
    return built


# --- tasks ---------------------------------------------------------------------

_task = _parser(TaskPublic)
_task_batch = _parser(TaskBatchPublic)
_task_page = _parser(Page[TaskPublic])
_run_page = _parser(Page[RunPublic])
_run_detail = _parser(RunDetail)


def key_header(idempotency_key: str | None) -> dict[str, str]:
    """The Idempotency-Key header, refused before any request when HTTP cannot carry the
    key as given: a character other than printable ASCII, or a space at either end
    (HTTP strips it: the server would see another key)."""
    if not idempotency_key:
        return {}
    if idempotency_key != idempotency_key.strip() or not all(
        " " <= c <= "~" for c in idempotency_key
    ):
        message = "printable ASCII only, without a space at either end"
        raise ValidationError(
            f"invalid request: Idempotency-Key: {message}",
            field_errors=[{"field": "Idempotency-Key", "message": message, "type": "value_error"}],
        )
    return {"Idempotency-Key": idempotency_key}


def create_task(
    task: TaskCreate | Mapping[str, Any] | None,
    fields: Mapping[str, Any],
    idempotency_key: str | None,
) -> Call[TaskPublic]:
    headers = key_header(idempotency_key)
    body = request_body(TaskCreate, task, fields).model_dump(mode="json", exclude_none=True)
    return Call("POST", f"{API}/tasks", _task, json=body, headers=headers)


def create_tasks(
    tasks: Iterable[TaskCreate | Mapping[str, Any]], idempotency_key: str | None
) -> Call[list[TaskPublic]]:
    """All the tasks in one request and one transaction (all or none)."""
    items = [t.model_dump(exclude_unset=True) if isinstance(t, TaskCreate) else t for t in tasks]
    batch: TaskBatchCreate = validated(TaskBatchCreate, {"tasks": items})
    headers = key_header(idempotency_key)
    body = batch.model_dump(mode="json", exclude_none=True)

    def parse(response: httpx.Response) -> list[TaskPublic]:
        answer: TaskBatchPublic = _task_batch(response)
        return answer.tasks

    return Call("POST", f"{API}/tasks/batch", parse, json=body, headers=headers)


def integer_id(value: int, field: str) -> int:
    """An integer id as a path takes it (a task's, a rollout's), checked here: int()
    turned 3.7 into task 3 and True into task 1 (a delete went to another task), and
    "abc" raised ValueError. A ValidationError naming `field` otherwise."""
    if isinstance(value, str) and value.strip().isdecimal():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    problem = f"must be an integer (got {value!r})"
    raise ValidationError(
        f"{field}: {problem}",
        field_errors=[{"field": field, "message": problem, "type": "int_type"}],
    )


def _task_id(task_id: int) -> int:
    return integer_id(task_id, "task_id")


def _run_id(run_id: str, field: str = "run_id") -> str:
    """A run's (or a workflow run's) id as the path takes it, checked here: an empty one
    went as /runs/ or /workflows//cancel and was answered "no such path"."""
    return _path_name(run_id, field)


def _path_name(value: str, field: str, check: Callable[[str], str] | None = None) -> str:
    """A name or id that is one segment of a path (a run id, a trigger's or a device's
    name), quoted, and checked before any request: an empty one left the segment out
    (/triggers/, /devices//values), which was answered "no such path", and so was a
    name holding a slash (the server reads %2F as one). `check` is the name's own rule,
    as the server applies it to a task's trigger or target."""
    if value is None or not str(value).strip():
        raise ValidationError(
            f"{field}: must not be empty",
            field_errors=[{"field": field, "message": "must not be empty", "type": "missing"}],
        )
    if check is not None:
        try:
            check(str(value))
        except ValueError as exc:
            raise ValidationError(
                f"invalid request: {field}: {exc}",
                field_errors=[{"field": field, "message": str(exc), "type": "value_error"}],
            ) from exc
    segment = quote(str(value), safe="")
    # A URL drops "." and ".." as path steps (runs.cancel("..") went to /api/v1/cancel,
    # "no such path"); their dots escaped, the server gets the id and names it.
    return segment.replace(".", "%2E") if segment in {".", ".."} else segment


def get_task(task_id: int) -> Call[TaskPublic]:
    return Call("GET", f"{API}/tasks/{_task_id(task_id)}", _task)


def list_tasks(page_size: int = 100, **filters: str | None) -> Call[Page[TaskPublic]]:
    """Filters: status, site, agent, op and search (sent as `q`); None means any."""
    unknown = set(filters) - {"status", "site", "agent", "op", "search"}
    if unknown:
        raise TypeError(f"unknown task filter(s): {', '.join(sorted(unknown))}")
    params: dict[str, Any] = {
        ("q" if k == "search" else k): v for k, v in filters.items() if v is not None
    }
    if "status" in params:
        params["status"] = task_status(params["status"])
    if "q" in params:
        params["q"] = _search(params["q"])
    params["limit"] = _page_size(page_size)
    return Call("GET", f"{API}/tasks", _task_page, params=params)


MAX_SEARCH = 200  # the server's bound on the text of a task search


def _search(text: Any) -> Any:
    """Checked here, as `page_size` is: the server's answer names its query parameter,
    `q`, which a caller of `list(search="")` never wrote."""
    if isinstance(text, str) and not 1 <= len(text) <= MAX_SEARCH:
        problem = f"must be 1 to {MAX_SEARCH} characters (got {len(text)})"
        raise ValidationError(
            f"search: {problem}",
            field_errors=[{"field": "search", "message": problem, "type": "value_error"}],
        )
    return text


MAX_PAGE_SIZE = 1000  # the server's bound on one page of tasks or runs


def _page_size(page_size: int) -> int:
    """Checked here: the server's answer names its query parameter, `limit`, which a
    caller of `list(page_size=5000)` never wrote."""
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        problem = f"must be an integer (got {page_size!r})"
    elif not 1 <= page_size <= MAX_PAGE_SIZE:
        problem = f"must be between 1 and {MAX_PAGE_SIZE} (got {page_size})"
    else:
        return page_size
    raise ValidationError(
        f"page_size: {problem}",
        field_errors=[{"field": "page_size", "message": problem, "type": "value_error"}],
    )


def task_status(status: str) -> str:
    """The status to filter on (tme.states.task_status), refused here already when it
    is none, with the same words the server would answer."""
    try:
        return states.task_status(status)
    except ValueError as exc:
        message = str(exc)
        raise ValidationError(
            f"status: {message}",
            field_errors=[{"field": "status", "message": message, "type": "enum"}],
        ) from None


def update_task(
    task_id: int, fields: Mapping[str, Any], if_match: int | None = None
) -> Call[TaskPublic]:
    update: TaskUpdate = validated(TaskUpdate, fields)
    body = update.model_dump(mode="json", exclude_unset=True)
    headers = {} if if_match is None else {"If-Match": f'"{integer_id(if_match, "if_match")}"'}
    return Call("PATCH", f"{API}/tasks/{_task_id(task_id)}", _task, json=body, headers=headers)


def report_task(
    task_id: int, status: str, log: str | None, details: dict[str, Any] | None
) -> Call[TaskPublic]:
    fields: dict[str, Any] = {"status": status}
    if log is not None:
        fields["log"] = log
    if details is not None:
        fields["details"] = details
    return update_task(task_id, fields)


def delete_task(task_id: int) -> Call[None]:
    return Call("DELETE", f"{API}/tasks/{_task_id(task_id)}", _no_content)


def list_runs(task_id: int, page_size: int = 100) -> Call[Page[RunPublic]]:
    params = {"limit": _page_size(page_size)}
    return Call("GET", f"{API}/tasks/{_task_id(task_id)}/runs", _run_page, params=params)


def get_run(run_id: str) -> Call[RunDetail]:
    return Call("GET", f"{API}/runs/{_run_id(run_id)}", _run_detail)


# --- run control ---------------------------------------------------------------

_run = _parser(RunPublic)
_trigger = _parser(TriggerFired)


def run_task(task_id: int) -> Call[RunPublic]:
    return Call("POST", f"{API}/tasks/{_task_id(task_id)}/run", _run)


def check_task(task_id: int) -> Call[RunPublic]:
    return Call("POST", f"{API}/tasks/{_task_id(task_id)}/check", _run)


def pause_task(task_id: int) -> Call[TaskPublic]:
    return Call("POST", f"{API}/tasks/{_task_id(task_id)}/pause", _task)


def resume_task(task_id: int) -> Call[TaskPublic]:
    return Call("POST", f"{API}/tasks/{_task_id(task_id)}/resume", _task)


def cancel_run(run_id: str, force: bool = False) -> Call[RunPublic]:
    params = {"force": "true"} if force else {}
    return Call("POST", f"{API}/runs/{_run_id(run_id)}/cancel", _run, params=params)


def retry_run(run_id: str) -> Call[RunPublic]:
    return Call("POST", f"{API}/runs/{_run_id(run_id)}/retry", _run)


def workflow_runs(workflow_id: str) -> Call[list[RunPublic]]:
    path = f"{API}/workflows/{_run_id(workflow_id, 'workflow_id')}"
    return Call("GET", path, _list_of(RunPublic))


def cancel_workflow(workflow_id: str, force: bool = False) -> Call[WorkflowCanceled]:
    params = {"force": "true"} if force else {}
    path = f"{API}/workflows/{_run_id(workflow_id, 'workflow_id')}/cancel"
    return Call("POST", path, _parser(WorkflowCanceled), params=params)


def fire_trigger(name: str) -> Call[TriggerFired]:
    return Call("POST", f"{API}/triggers/{_path_name(name, 'name', check_trigger_name)}", _trigger)


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _json_object)


def ready() -> Call[dict[str, Any]]:
    return Call("GET", "/readyz", _json_object)


# --- fleet ---------------------------------------------------------------------


def _list_of(model: type[pydantic.BaseModel]) -> Callable[[httpx.Response], Any]:
    def parse(response: httpx.Response) -> Any:
        check(response)
        body = _body(response)
        if not isinstance(body, list):
            raise unexpected(response, "not a list")
        return [_read_as(model, item, response) for item in body]

    return parse


def _linked_page(model: type[M]) -> Callable[[httpx.Response], Page[M]]:
    """The reader of a listing that answers a plain JSON list of `model` (GET
    /api/v1/rollouts, /api/v1/notifications/deliveries): its items, and the `cursor` of
    the URL its `Link: rel="next"` header gives (the answer stays the list it was before
    it was paged), so that the clients' `iterate` follows it as any other page."""
    items_of = _list_of(model)

    def parse(response: httpx.Response) -> Page[M]:
        items: list[M] = items_of(response)
        next_url = response.links.get("next", {}).get("url")
        cursor = httpx.URL(next_url).params.get("cursor") if next_url else None
        return Page(items=items, next_cursor=cursor)

    return parse


def list_resources() -> Call[list[ResourcePublic]]:
    return Call("GET", f"{API}/resources", _list_of(ResourcePublic))
