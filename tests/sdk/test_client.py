"""tme.Client against the real controller app: in-process (TestClient) and over HTTP (uvicorn).

Each test runs twice, once per way of reaching the app, so the SDK is known to work
both embedded in a test and against a running server.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator

import pytest

import tme
from tme.errors import Conflict, NotFound, TransportError, ValidationError
from tme.schemas import TaskCreate, TaskPublic


@pytest.fixture(params=["in_process", "live"])
def client(request: pytest.FixtureRequest) -> Iterator[tme.Client]:
    if request.param == "in_process":
        sdk = tme.Client(http_client=request.getfixturevalue("test_client"))
    else:
        sdk = tme.Client(request.getfixturevalue("live_url"))
    with sdk:
        yield sdk


def unique(prefix: str = "sdk") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_create_get_update_delete(client: tme.Client) -> None:
    name = unique()
    created = client.tasks.create(
        name=name, description="level check", target={"site": "plant-1"}, params={"k": 1}
    )
    assert created.id > 0 and created.op == "external"

    fetched = client.tasks.get(created.id)
    assert (fetched.name, fetched.description, fetched.params) == (name, "level check", {"k": 1})
    assert fetched.target is not None and fetched.target.site == "plant-1"

    updated = client.tasks.update(created.id, description="changed", priority=8)
    assert (updated.description, updated.priority) == ("changed", 8)
    assert client.tasks.get(created.id).priority == 8

    client.tasks.delete(created.id)
    with pytest.raises(NotFound):
        client.tasks.get(created.id)


def test_resources_round_trip(client: tme.Client) -> None:
    task = client.tasks.create(name=unique(), resources=["tank1", "cell-a"])
    assert client.tasks.get(task.id).resources == ["tank1", "cell-a"]
    assert client.tasks.update(task.id, resources=["tank2"]).resources == ["tank2"]
    assert client.tasks.get(task.id).resources == ["tank2"]
    with pytest.raises(ValidationError) as caught:
        client.tasks.create(name=unique(), resources=["tank 1"])
    assert [e["field"] for e in caught.value.field_errors] == ["resources.0"]


def test_create_from_model_with_overrides(client: tme.Client) -> None:
    body = TaskCreate(name=unique(), priority=2)
    task = client.tasks.create(body, priority=7)
    assert (task.name, task.priority) == (body.name, 7)


def test_create_from_a_dict_with_overrides(client: tme.Client) -> None:
    # As create_many takes each task; a dict alone raised AttributeError (model_dump).
    name = unique()
    task = client.tasks.create({"name": name, "priority": 2, "description": "d"}, priority=7)
    assert (task.name, task.priority, task.description) == (name, 7, "d")
    with pytest.raises(ValidationError) as caught:
        client.tasks.create({"name": name, "priority": 42})
    assert [e["field"] for e in caught.value.field_errors] == ["priority"]
    with pytest.raises(TypeError, match="TaskCreate or a mapping of its fields, got str"):
        client.tasks.create(name)  # type: ignore[arg-type]


def test_list_iterates_across_pages_and_filters(client: tme.Client) -> None:
    marker = unique("page")
    ids = {client.tasks.create(name=f"{marker}-{i}").id for i in range(7)}
    client.tasks.create(name=unique("other"))

    listed = list(client.tasks.list(search=marker, page_size=3))  # 3 pages
    assert {t.id for t in listed} == ids
    assert len(listed) == len(ids)  # no page read twice

    first = min(ids)
    client.tasks.report(first, "started")
    running = list(client.tasks.list(status="running", search=marker, page_size=2))
    assert [t.id for t in running] == [first]


def test_list_status_filter_refuses_a_typo_and_takes_report_words(client: tme.Client) -> None:
    marker = unique("status")
    done = client.tasks.create(name=f"{marker}-done").id
    client.tasks.report(done, "complete")

    # A typo would match no task and read as "there are none": it is an error instead.
    with pytest.raises(ValidationError) as caught:
        client.tasks.list(status="succeded", search=marker)
    assert caught.value.field_errors[0]["field"] == "status"
    assert 'did you mean "succeeded"' in caught.value.message

    # The words of a status report name the state they lead to.
    assert [t.id for t in client.tasks.list(status="complete", search=marker)] == [done]
    assert [t.id for t in client.tasks.list(status="succeeded", search=marker)] == [done]


def test_report_runs_and_run_detail(client: tme.Client) -> None:
    task = client.tasks.create(name=unique())
    assert client.tasks.report(task.id, "started").status == "running"
    done = client.tasks.report(task.id, "complete", log="all good", details={"level": 3.5})
    assert done.status == "succeeded"

    runs = list(client.tasks.runs(task.id))
    assert [r.state for r in runs] == ["succeeded"]
    detail = client.runs.get(runs[0].id)
    assert detail.result == {"level": 3.5}
    assert [line.line for line in detail.log] == ["all good"]
    assert [e.to_state for e in detail.events][-2:] == ["running", "succeeded"]
    # Its workflow run (it began one: its own id) and why it exists.
    assert (detail.workflow_id, detail.cause) == (runs[0].id, "created")
    assert (runs[0].workflow_id, runs[0].cause) == (runs[0].id, "created")


def test_wait_returns_final_task_and_times_out(client: tme.Client) -> None:
    task = client.tasks.create(name=unique())
    with pytest.raises(TimeoutError, match=str(task.id)):
        client.tasks.wait(task.id, timeout=0.3, poll_s=0.05)
    client.tasks.report(task.id, "fail", log="pump did not start")
    assert client.tasks.wait(task.id, timeout=5).status == "failed"


def test_wait_on_a_paused_task_that_never_ran_says_it_is_paused(client: tme.Client) -> None:
    # "still 'idle'" alone sent the reader looking for a broken schedule.
    task = client.tasks.create(name=unique(), schedule={"every_s": 3600})
    client.tasks.pause(task.id)
    with pytest.raises(TimeoutError) as info:
        client.tasks.wait(task.id, timeout=0.1, poll_s=0.05)
    assert str(info.value) == (
        f"task {task.id} still 'idle' after 0.1s (it is paused: its schedule, trigger and"
        " dependencies start nothing)"
    )


def test_wait_on_a_dependent_that_never_ran_says_it_waits_for_its_dependencies(
    client: tme.Client,
) -> None:
    # "still 'idle'" alone: the reader looked for a schedule a dependent does not have.
    first = client.tasks.create(name=unique(), trigger=unique()[:60])
    task = client.tasks.create(name=unique(), depends_on=[{"task": first.id}])
    with pytest.raises(TimeoutError) as info:
        client.tasks.wait(task.id, timeout=0.1, poll_s=0.05)
    assert str(info.value) == (
        f"task {task.id} still 'idle' after 0.1s (it starts only as a dependent, once"
        f" task {first.id} settles in a workflow run)"
    )


def test_wait_sees_a_report_made_while_waiting(live_url: str) -> None:
    with tme.Client(live_url) as waiter, tme.Client(live_url) as reporter:
        task = reporter.tasks.create(name=unique())
        result: dict[str, object] = {}
        polled = threading.Event()
        original_get = waiter.tasks.get

        def get_and_signal(task_id: int) -> TaskPublic:
            found = original_get(task_id)
            polled.set()
            return found

        waiter.tasks.get = get_and_signal  # type: ignore[method-assign]
        thread = threading.Thread(
            target=lambda: result.update(task=waiter.tasks.wait(task.id, timeout=10, poll_s=0.05))
        )
        thread.start()
        assert polled.wait(5), "wait() never polled"
        reporter.tasks.report(task.id, "complete")
        thread.join(10)
        assert not thread.is_alive()
        assert getattr(result["task"], "status", None) == "succeeded"


def test_not_found(client: tme.Client) -> None:
    with pytest.raises(NotFound) as caught:
        client.tasks.get(987_654)
    assert caught.value.status_code == 404 and caught.value.code == "not_found"
    with pytest.raises(NotFound):
        client.tasks.delete(987_654)
    with pytest.raises(NotFound):
        client.runs.get("no-such-run")


def test_a_wrong_base_url_is_answered_naming_the_path_asked(client: tme.Client) -> None:
    # Given ".../api/v1" as TME's URL, every call was answered "no such path" alone.
    base = client.url + "/api/v1"
    wrong = tme.Client(base, http_client=client._http)  # the same HTTP client, not closed
    with pytest.raises(NotFound) as caught:
        wrong.tasks.get(1)
    assert caught.value.message == "no such path: /api/v1/api/v1/tasks/1"


@pytest.mark.parametrize("run_id", [".", ".."])
def test_a_run_id_a_url_reads_as_a_path_step_is_not_found_by_its_id(
    client: tme.Client, run_id: str
) -> None:
    # A URL dropped it as a step: runs.cancel("..") went to /api/v1/cancel, "no such path".
    for call in (client.runs.get, client.runs.cancel, client.runs.retry):
        with pytest.raises(NotFound) as caught:
            call(run_id)
        assert caught.value.message == f"run {run_id} does not exist"
    with pytest.raises(NotFound, match=f"^workflow run {re.escape(run_id)} does not exist$"):
        client.runs.cancel_workflow(run_id)


def test_idempotency_key_replays_and_conflicts(client: tme.Client) -> None:
    key = uuid.uuid4().hex
    name = unique()
    first = client.tasks.create(name=name, idempotency_key=key)
    again = client.tasks.create(name=name, idempotency_key=key)
    assert again.id == first.id
    with pytest.raises(Conflict) as caught:
        client.tasks.create(name=name + "-other", idempotency_key=key)
    assert caught.value.status_code == 409


def test_server_validation_error_carries_field_errors(client: tme.Client) -> None:
    with pytest.raises(ValidationError) as caught:
        client.tasks.create(name=unique(), depends_on=[{"task": 987_654, "on": "success"}])
    fields = [e["field"] for e in caught.value.field_errors]
    assert fields == ["depends_on.0.task"]
    assert caught.value.status_code == 422


def test_local_validation_error_names_fields(client: tme.Client) -> None:
    with pytest.raises(ValidationError) as caught:
        client.tasks.create(name="", priority=42)
    assert {e["field"] for e in caught.value.field_errors} == {"name", "priority"}
    with pytest.raises(ValidationError) as caught:
        client.tasks.update(1, op="noop")
    assert caught.value.field_errors[0]["message"] == "unknown field"


def test_health_and_ready(client: tme.Client) -> None:
    assert client.health()["status"] == "ok"
    assert client.ready()["status"] == "ready"


def test_unreachable_server_raises_transport_error(closed_port_url: str) -> None:
    with tme.Client(closed_port_url, timeout=2) as client, pytest.raises(TransportError) as caught:
        client.tasks.get(1)
    assert closed_port_url in caught.value.message


def test_create_many_makes_every_task_or_none(client: tme.Client) -> None:
    names = [unique("batch") for _ in range(3)]
    made = client.tasks.create_many(
        [TaskCreate(name=names[0]), {"name": names[1]}, {"name": names[2], "priority": 1}],
        idempotency_key=unique("key"),
    )
    assert [t.name for t in made] == names and all(isinstance(t, TaskPublic) for t in made)
    assert made[2].priority == 1 and client.tasks.get(made[1].id).name == names[1]
    with pytest.raises(ValidationError, match=r"tasks\.1"):
        client.tasks.create_many([{"name": unique()}, {"name": ""}])  # checked before sending
    bad = {"name": unique(), "depends_on": [{"task": 999_999_999, "on": "success"}]}
    with pytest.raises(ValidationError, match=r"tasks\.1"):
        client.tasks.create_many([{"name": "never stored"}, bad])
    assert [t for t in client.tasks.list(search="never stored")] == []


def test_clients_share_one_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a client does not load the CA bundle again (httpx would, ~25 ms of CPU
    per client); TLS verification stays httpx's default."""
    import ssl

    from tme.client.aio import AsyncClient

    loads: list[object] = []
    default = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        loads.append(kwargs.get("cafile"))
        return default(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    clients = [tme.Client("https://tme.example:8443", "t") for _ in range(3)]
    clients.append(AsyncClient("https://tme.example:8443", "t"))  # type: ignore[arg-type]
    assert len(loads) <= 1  # once per process, if no client was built before
    context = clients[0]._http._transport._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    for client in clients[:3]:
        client.close()
