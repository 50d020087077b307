"""What the SDK puts on the wire and how it reads answers the app cannot produce yet
(auth, size limits, outages, answers that are not TME's), with httpx.MockTransport.

Everything the controller can answer is tested against the real app in the other files.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

import tme
from tme.cli.main import app as cli_app
from tme.errors import (
    APIError,
    AuthError,
    Forbidden,
    PayloadTooLarge,
    TransportError,
    Unavailable,
    ValidationError,
)

TASK = {"id": 3, "name": "t", "op": "external", "status": "pending",
        "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z"}  # fmt: skip


def client_answering(handler: Callable[[httpx.Request], httpx.Response]) -> tme.Client:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return tme.Client("http://tme.test/base/", token="s3cret", http_client=http)


def test_token_key_and_path_prefix_are_sent() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=TASK)

    client_answering(handler).tasks.create(name="t", idempotency_key="k-1")
    request = seen[0]
    assert str(request.url) == "http://tme.test/base/api/v1/tasks"
    assert request.headers["Authorization"] == "Bearer s3cret"
    assert request.headers["Idempotency-Key"] == "k-1"
    assert request.headers["User-Agent"].startswith("tme-sdk/")


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), "5", True])
def test_a_request_timeout_no_request_can_use_is_refused_naming_it(timeout: object) -> None:
    # 0 failed every connection ("[Errno 115] Operation now in progress"); -1 and NaN
    # raised ValueError at the first request, "5" TypeError.
    for client_class in (tme.Client, tme.AsyncClient):
        with pytest.raises(ValidationError) as caught:
            client_class("http://tme.test", timeout=timeout)  # type: ignore[arg-type]
        assert caught.value.message.startswith("timeout: must be more than 0 seconds")
        assert [e["field"] for e in caught.value.field_errors] == ["timeout"]


@pytest.mark.parametrize(("timeout", "limit"), [(None, None), (float("inf"), None), (2, 2.0)])
def test_a_request_timeout_of_none_or_infinity_sets_no_limit(
    timeout: float | None, limit: float | None
) -> None:
    with tme.Client("http://tme.test", timeout=timeout) as client:
        assert client._http.timeout.read == limit


async def test_an_http_client_of_the_other_kind_is_refused_as_the_client_is_built() -> None:
    # tme.Client failed at the first call ('coroutine' object has no attribute
    # 'is_success'); tme.AsyncClient blocked its event loop on each request.
    async with httpx.AsyncClient(base_url="http://tme.test") as async_http:
        with pytest.raises(TypeError, match=r"^http_client must be a blocking HTTP client"):
            tme.Client(http_client=async_http)  # type: ignore[arg-type]
        assert tme.AsyncClient(http_client=async_http).url == "http://tme.test"
    http = httpx.Client(base_url="http://tme.test")
    with http, pytest.raises(TypeError, match=r"^http_client must be an async HTTP client"):
        tme.AsyncClient(http_client=http)  # type: ignore[arg-type]
    assert tme.Client(http_client=http).url == "http://tme.test"


def test_url_and_token_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TME_URL", "http://from-env:9000/")
    monkeypatch.setenv("TME_TOKEN", "env-token")
    with tme.Client() as client:
        assert client.connection.url == "http://from-env:9000"
        assert client.connection.token == "env-token"
    with tme.Client(token="") as anonymous:  # no token at all, not TME_TOKEN's
        assert anonymous.connection.token is None


def test_a_url_read_with_spaces_or_its_line_end_is_taken_without_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was "missing an 'http://' or 'https://' protocol".
    with tme.Client(" http://tme.test/base/ \n") as client:
        assert client.url == "http://tme.test/base"
    monkeypatch.setenv("TME_URL", "http://from-env:9000\n")
    for blank in (None, " "):
        with tme.Client(blank) as client:
            assert client.url == "http://from-env:9000"


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthError), (403, Forbidden), (413, PayloadTooLarge), (503, Unavailable)],
)
def test_error_statuses_become_typed_errors(status: int, error: type[APIError]) -> None:
    body = {"error": {"code": "x_code", "message": "refused here", "details": {"a": 1}}}
    client = client_answering(lambda _: httpx.Response(status, json=body))
    with pytest.raises(error) as caught:
        client.tasks.get(3)
    assert (caught.value.message, caught.value.code, caught.value.details) == (
        "refused here", "x_code", {"a": 1},
    )  # fmt: skip


def test_answers_that_are_not_tme_raise_api_error() -> None:
    page = "<html><body>\n  <h1>502 Bad Gateway</h1>\n  nginx</body></html>"
    proxy_page = client_answering(lambda _: httpx.Response(502, text=page))
    with pytest.raises(APIError, match=r"^HTTP 502: 502 Bad Gateway nginx$"):
        proxy_page.tasks.get(3)
    styled = (
        "<html><head><title>502</title><style>body { font: 12px sans-serif }</style>"
        "<script>var retry = 5;</script><!-- edge 7 --></head><body>Bad Gateway</body></html>"
    )
    styled_page = client_answering(lambda _: httpx.Response(502, text=styled))
    with pytest.raises(APIError, match=r"^HTTP 502: 502 Bad Gateway$"):  # not its CSS
        styled_page.tasks.get(3)
    other_app = client_answering(lambda _: httpx.Response(404, json={"detail": "Not Found"}))
    with pytest.raises(APIError, match=r"^HTTP 404: Not Found$"):
        other_app.tasks.get(3)
    wrong_app = client_answering(lambda _: httpx.Response(200, json={"hello": "world"}))
    with pytest.raises(APIError, match="unexpected answer") as caught:
        wrong_app.tasks.get(3)
    # its own status and code, where it was 500 and internal_error, which nobody said
    assert (caught.value.status_code, caught.value.code) == (200, "unexpected_answer")
    text_app = client_answering(lambda _: httpx.Response(201, text="made"))
    for call in (text_app.health, text_app.fleet.sites):
        with pytest.raises(APIError, match="unexpected answer") as caught:
            call()
        assert (caught.value.status_code, caught.value.code) == (201, "unexpected_answer")


def test_a_redirect_says_where_it_leads() -> None:
    # A proxy sending http:// to https:// was "HTTP 301: 301 Moved Permanently nginx".
    page = "<html><head><title>301 Moved Permanently</title></head><body>nginx</body></html>"
    moved = {"Location": "https://tme.test/base/api/v1/tasks/3"}
    proxy = client_answering(lambda _: httpx.Response(301, headers=moved, text=page))
    with pytest.raises(APIError) as caught:
        proxy.tasks.get(3)
    assert caught.value.status_code == 301
    assert (
        str(caught.value)
        == caught.value.message
        == (
            "HTTP 301: 301 Moved Permanently nginx (redirected to"
            " https://tme.test/base/api/v1/tasks/3; the SDK follows no redirect: give the URL"
            " TME answers at)"
        )
    )
    elsewhere = client_answering(lambda _: httpx.Response(307, headers={"Location": "/tme/x"}))
    with pytest.raises(APIError, match=re.escape("(redirected to http://tme.test/tme/x;")):
        elsewhere.tasks.create(name="t")


def test_a_list_of_foreign_items_raises_api_error_for_every_listing() -> None:
    # Another app's list at the same path: the SDK's error, not pydantic's.
    wrong_app = client_answering(lambda _: httpx.Response(200, json=[{"hello": "world"}]))
    expected = re.escape("unexpected answer from http://tme.test/base/api/v1/")
    for listing in (wrong_app.fleet.sites, wrong_app.fleet.agents, wrong_app.fleet.devices):
        with pytest.raises(APIError, match=expected):
            listing()


@pytest.mark.parametrize("answer", [{"text": "ok"}, {"json": ["ok"]}, {"text": "<html>hi</html>"}])
def test_a_health_answer_that_is_not_tme_raises_api_error(answer: dict[str, object]) -> None:
    # health() and ready() raised ValueError or TypeError from dict() on such an answer.
    wrong_app = client_answering(lambda _: httpx.Response(200, **answer))  # type: ignore[arg-type]
    for probe, path in ((wrong_app.health, "healthz"), (wrong_app.ready, "readyz")):
        expected = f"unexpected answer from http://tme.test/base/{path}: not a JSON object"
        with pytest.raises(APIError, match=f"^{re.escape(expected)}$"):
            probe()


def test_timeout_becomes_transport_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TransportError, match="did not answer in time"):
        client_answering(handler).health()


def test_a_connection_failing_at_every_address_says_what_the_os_said_of_each() -> None:
    # The async transport's own text is "All connection attempts failed"; its cause, one
    # OS error per address tried (IPv6 and IPv4 of localhost), says why.
    def handler(request: httpx.Request) -> httpx.Response:
        tried = [ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed ('::1', 9)"),
                 OSError(errno.ENETUNREACH, "Connect call failed ('10.0.0.1', 9)")]  # fmt: skip
        try:
            raise OSError("All connection attempts failed") from ExceptionGroup("tried", tried)
        except OSError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    with pytest.raises(TransportError) as caught:
        client_answering(handler).tasks.get(3)
    refused, unreachable = (f"[Errno {n}] {os.strerror(n)}"
                            for n in (errno.ECONNREFUSED, errno.ENETUNREACH))  # fmt: skip
    expected = f"cannot reach TME at http://tme.test/base: {refused}; {unreachable}"
    assert caught.value.message == expected


def test_an_answer_that_cannot_be_decoded_becomes_transport_error() -> None:
    # A proxy's broken gzip escaped as httpx.DecodingError.
    broken = {"Content-Encoding": "gzip"}
    client = client_answering(lambda _: httpx.Response(200, headers=broken, content=b"nope"))
    with pytest.raises(TransportError, match=r"^the answer of TME at http://tme\.test/base "):
        client.tasks.get(3)


def test_unknown_list_filter_is_refused() -> None:
    from tme.client import calls

    with pytest.raises(TypeError, match="colour"):
        calls.list_tasks(colour="red")


def test_wait_takes_a_final_status_alone_from_a_controller_without_settled() -> None:
    """A controller older than the `settled` field does not send it: its final status
    ends the wait, as it did then; one that says `settled: false` does not."""
    older = client_answering(lambda _: httpx.Response(200, json={**TASK, "status": "failed"}))
    assert older.tasks.wait(3, timeout=1, poll_s=0.01).status == "failed"
    unsettled = {**TASK, "status": "failed", "settled": False}
    newer = client_answering(lambda _: httpx.Response(200, json=unsettled))
    with pytest.raises(TimeoutError, match=r"'failed' after 0\.05s, but not settled"):
        newer.tasks.wait(3, timeout=0.05, poll_s=0.01)


@pytest.mark.parametrize("page_size", [0, 1001, 5000, 2.5])
def test_a_page_size_out_of_bounds_is_refused_naming_page_size(page_size: int) -> None:
    # The server's 422 named its query parameter, `limit`, which the caller never wrote.
    sent: list[httpx.Request] = []
    client = client_answering(lambda request: sent.append(request) or httpx.Response(500))
    for listing in (lambda: client.tasks.list(page_size=page_size),
                    lambda: client.tasks.runs(3, page_size=page_size)):  # fmt: skip
        with pytest.raises(tme.errors.ValidationError) as info:
            list(listing())
        assert info.value.message.startswith("page_size: must be ")
        assert info.value.field_errors[0]["field"] == "page_size"
    assert sent == []


@pytest.mark.parametrize("search", ["", "x" * 201])
def test_a_search_the_server_refuses_is_refused_naming_search(search: str) -> None:
    # The server's 422 named its query parameter, `q`, which the caller never wrote.
    sent: list[httpx.Request] = []
    client = client_answering(lambda request: sent.append(request) or httpx.Response(500))
    with pytest.raises(ValidationError) as caught:
        list(client.tasks.list(search=search))
    assert caught.value.message == f"search: must be 1 to 200 characters (got {len(search)})"
    assert [e["field"] for e in caught.value.field_errors] == ["search"]
    assert sent == []


def test_a_token_read_with_its_line_end_is_sent_without_it() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=TASK)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    tme.Client("http://tme.test", token="s3cret\n", http_client=http).tasks.get(3)
    assert seen[0].headers["Authorization"] == "Bearer s3cret"


@pytest.mark.parametrize("token", ["s3cr\u00e9t", "s3cret\u00a0x", "s3 cret", "s3cret\r\nX-A: 1"])
def test_a_token_no_header_can_carry_is_an_auth_error_that_does_not_repeat_it(
    token: str,
) -> None:
    sent: list[httpx.Request] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
    )
    with pytest.raises(AuthError, match="malformed token") as caught:
        tme.Client("http://tme.test", token=token, http_client=http).tasks.get(3)
    assert "s3" not in caught.value.message and sent == []


@pytest.mark.parametrize("key", ["cl\u00e9", "a\nb", " k", "k "])
def test_an_idempotency_key_no_header_can_carry_is_refused_naming_it(key: str) -> None:
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(201, json=TASK))
    for create in (
        lambda: client.tasks.create(name="t", idempotency_key=key),
        lambda: client.tasks.create_many([{"name": "t"}], idempotency_key=key),
    ):
        with pytest.raises(ValidationError) as caught:
            create()
        assert [e["field"] for e in caught.value.field_errors] == ["Idempotency-Key"]
    assert sent == []


def test_a_network_error_quoting_the_headers_does_not_repeat_the_token() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value {request.headers['authorization']}")

    with pytest.raises(TransportError) as caught:
        client_answering(handler).tasks.get(3)
    assert "s3cret" not in caught.value.message and "<token>" in caught.value.message


def test_a_short_token_is_hidden_alone_not_inside_the_words_of_an_error(
    closed_port_url: str,
) -> None:
    # Token "t" made it "canno<token> reach TME a<token> h<token><token>p://127.0.0.1:...".
    with tme.Client(closed_port_url, token="t") as client, pytest.raises(TransportError) as caught:
        client.tasks.get(3)
    assert caught.value.message.startswith(f"cannot reach TME at {closed_port_url}: ")

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError(f"Illegal header value {request.headers['authorization']}")

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with pytest.raises(TransportError) as caught:
        tme.Client("http://tme.test", token="t", http_client=http).tasks.get(3)
    assert caught.value.message.endswith("Illegal header value Bearer <token>")


@pytest.mark.parametrize("task_id", [3.7, True, "abc", None, "3 or 1=1"])
def test_a_task_id_that_is_no_integer_is_refused_before_any_request(task_id: object) -> None:
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(204))
    tasks = client.tasks
    for call in (tasks.get, tasks.delete, tasks.run, tasks.runs, tasks.check, tasks.pause):
        with pytest.raises(ValidationError) as caught:
            result = call(task_id)  # type: ignore[operator]
            next(iter(result))  # runs() is lazy
        assert [e["field"] for e in caught.value.field_errors] == ["task_id"]
    assert sent == []


def test_a_task_id_given_as_digits_is_taken() -> None:
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(204))
    client.tasks.delete(" 12 ")  # type: ignore[arg-type]
    assert sent[0].url.path == "/base/api/v1/tasks/12"


@pytest.mark.parametrize("revision", [2.5, True, "abc", "2 or 1"])
def test_an_if_match_that_is_no_revision_is_refused_before_any_request(revision: object) -> None:
    # int() sent 2.5 as revision 2 and True as 1, and raised a bare ValueError on "abc".
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(200, json=TASK))
    with pytest.raises(ValidationError) as caught:
        client.tasks.update(3, if_match=revision, priority=2)  # type: ignore[arg-type]
    assert [e["field"] for e in caught.value.field_errors] == ["if_match"]
    assert sent == []
    client.tasks.update(3, if_match=4, priority=2)
    assert sent[0].headers["If-Match"] == '"4"'


@pytest.mark.parametrize("run_id", ["", "   ", None])
def test_an_empty_run_or_workflow_id_is_refused_before_any_request(run_id: object) -> None:
    # It went as /api/v1/workflows//cancel, answered "no such path".
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(204))
    calls = {
        "run_id": (client.runs.get, client.runs.cancel, client.runs.retry),
        "workflow_id": (client.runs.workflow, client.runs.cancel_workflow),
    }
    for field, methods in calls.items():
        for call in methods:
            with pytest.raises(ValidationError) as caught:
                call(run_id)  # type: ignore[operator]
            assert [e["field"] for e in caught.value.field_errors] == [field]
            assert caught.value.message == f"{field}: must not be empty"
    assert sent == []


@pytest.mark.parametrize("name", ["", "   ", None])
def test_an_empty_trigger_or_device_name_is_refused_before_any_request(name: object) -> None:
    # It went as /api/v1/triggers/ or /api/v1/devices//values, answered "no such path".
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(204))
    calls = {
        "name": (client.triggers.fire,),
        "device": (
            client.fleet.values,
            lambda device: client.fleet.stop(device, reason="leak"),
            lambda device: client.fleet.resume(device, reason="fixed"),
        ),
        "site": (lambda site: client.fleet.stop_site(site, reason="flood"),),
    }
    for field, methods in calls.items():
        for call in methods:
            with pytest.raises(ValidationError) as caught:
                call(name)  # type: ignore[operator]
            assert [e["field"] for e in caught.value.field_errors] == [field]
            assert caught.value.message == f"{field}: must not be empty"
    assert sent == []


@pytest.mark.parametrize("name", ["a/b", "bad name", "-x"])
def test_a_trigger_or_device_name_no_task_can_have_is_refused_before_any_request(
    name: str,
) -> None:
    # A slash went as %2F, which the server reads as a slash: answered "no such path".
    sent: list[httpx.Request] = []
    client = client_answering(lambda r: sent.append(r) or httpx.Response(204))
    with pytest.raises(ValidationError) as caught:
        client.triggers.fire(name)
    assert [e["field"] for e in caught.value.field_errors] == ["name"]
    assert f"{name!r} is no trigger name: 1 to 64 letters" in caught.value.message
    for call in (
        client.fleet.values,
        lambda device: client.fleet.stop(device, reason="leak"),
        lambda device: client.fleet.resume(device, reason="fixed"),
    ):
        with pytest.raises(ValidationError) as caught:
            call(name)
        assert [e["field"] for e in caught.value.field_errors] == ["device"]
        assert f"{name!r} is not a name a task can target" in caught.value.message
    assert sent == []


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["trigger", "fire", ""], "error: name: must not be empty"),
        (["device", "values", ""], "error: device: must not be empty"),
        (["device", "stop", " ", "--reason", "leak"], "error: device: must not be empty"),
        (["device", "resume", "", "--reason", "fixed"], "error: device: must not be empty"),
    ],
)
def test_cli_refuses_an_empty_trigger_or_device_name_with_exit_2(
    args: list[str], line: str
) -> None:
    # Nothing listens on port 9: a request would be "cannot reach TME" with exit 1.
    result = CliRunner().invoke(cli_app, [*args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == line


@pytest.mark.parametrize(
    ("timeout", "poll_s", "field"),
    [(float("nan"), 0.2, "timeout"), (-1.0, 0.2, "timeout"), (5.0, float("nan"), "poll_s")],
)
def test_a_wait_no_deadline_can_end_is_refused_before_any_request(
    timeout: float, poll_s: float, field: str
) -> None:
    """NaN never compares: a wait for NaN seconds polled for ever."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert len(sent) < 5, "polled on and on"
        return httpx.Response(200, json=TASK)

    client = client_answering(handler)
    with pytest.raises(ValidationError) as caught:
        client.tasks.wait(3, timeout=timeout, poll_s=poll_s)
    assert [e["field"] for e in caught.value.field_errors] == [field]
    assert sent == []


@pytest.mark.parametrize(
    "command",
    [
        ["task", "wait", "3", "--timeout", "nan"],
        ["run", "workflow", "w1", "--wait", "--timeout", "nan"],
        ["device", "stop", "pump1", "--reason", "leak", "--timeout", "nan"],
        ["device", "resume", "pump1", "--reason", "fixed", "--timeout", "-1"],
    ],
)
def test_the_cli_refuses_such_a_timeout_before_it_sends_anything(
    command: list[str], closed_port_url: str
) -> None:
    """Exit 2 naming --timeout, before any request: the stop went out before the wait
    refused, and `tme task wait --timeout nan` never ended."""
    from typer.testing import CliRunner

    from tme.cli.main import app

    result = CliRunner().invoke(app, [*command, "--url", closed_port_url])
    assert result.exit_code == 2, result.output
    assert "timeout" in result.stderr and "cannot reach" not in result.stderr


def test_a_password_in_the_url_is_never_in_an_error() -> None:
    """A proxy in front of TME may take user:password@ in the URL: an unreachable server
    or an answer that is not TME's said the URL whole, password included."""

    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    url = "http://ops:pr0xy-pw@tme.test/base"
    foreign = {"hello": "world"}
    for handler, error, asked in (
        (unreachable, TransportError, "task"),
        (lambda _: httpx.Response(200, json=foreign), APIError, "task"),  # not a task
        (lambda _: httpx.Response(200, json=foreign), APIError, "sites"),  # not a list
    ):
        http = httpx.Client(transport=httpx.MockTransport(handler))
        client = tme.Client(url, token="s3cret", http_client=http)
        with pytest.raises(error) as caught:
            client.tasks.get(3) if asked == "task" else client.fleet.sites()
        assert "pr0xy-pw" not in caught.value.message, caught.value.message
        assert "ops:***@tme.test" in caught.value.message
