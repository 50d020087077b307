"""Every CLI command that takes an id or a name answers one that does not exist, one that
is malformed, and a refusal of the API with one error line on stderr (the API's message),
nothing on stdout, and a non-zero exit: 1 when the id is unknown or the API refused, 2
when the input cannot be read. `tme trigger fire nope` printed an empty table and exited
0, and `tme token list --user nope` an empty table."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cli_lines import failing_tme
from typer.testing import CliRunner, Result

from tme.cli.main import app

UNKNOWN_TASK = "task 999999 does not exist [not_found]"
UNKNOWN_RUN = "run no-such-run does not exist [not_found]"
UNKNOWN_WORKFLOW = "workflow run no-such-run does not exist [not_found]"
UNKNOWN_ROLLOUT = "rollout 999999 does not exist [not_found]"
UNKNOWN_DEVICE = "device 'no-such-pump' does not exist [not_found]"

# (arguments, exit code, the error line's text after "error: ") against a controller.
API_COMMANDS = {
    "task show": (["task", "show", "999999"], 1, UNKNOWN_TASK),
    "task update": (["task", "update", "999999", "--name", "x"], 1, UNKNOWN_TASK),
    "task delete": (["task", "delete", "999999", "--yes"], 1, UNKNOWN_TASK),
    "task wait": (["task", "wait", "999999", "--timeout", "1"], 1, UNKNOWN_TASK),
    "task run": (["task", "run", "999999"], 1, UNKNOWN_TASK),
    "task check": (["task", "check", "999999"], 1, UNKNOWN_TASK),
    "task pause": (["task", "pause", "999999"], 1, UNKNOWN_TASK),
    "task resume": (["task", "resume", "999999"], 1, UNKNOWN_TASK),
    "run show": (["run", "show", "no-such-run"], 1, UNKNOWN_RUN),
    "run cancel": (["run", "cancel", "no-such-run"], 1, UNKNOWN_RUN),
    "run retry": (["run", "retry", "no-such-run"], 1, UNKNOWN_RUN),
    "run workflow": (["run", "workflow", "no-such-run"], 1, UNKNOWN_WORKFLOW),
    "run cancel --workflow": (
        ["run", "cancel", "no-such-run", "--workflow"], 1, UNKNOWN_WORKFLOW
    ),
    "trigger fire": (
        ["trigger", "fire", "no-such-trigger"],
        1,
        "no task is bound to trigger 'no-such-trigger' (that your token reaches):"
        " nothing was started [not_found]",
    ),
    "trigger fire --json": (
        ["trigger", "fire", "no-such-trigger", "--json"],
        1,
        "no task is bound to trigger 'no-such-trigger'",
    ),
    "rollout show": (["rollout", "show", "999999"], 1, UNKNOWN_ROLLOUT),
    "rollout cancel": (["rollout", "cancel", "999999"], 1, UNKNOWN_ROLLOUT),
    "device values": (["device", "values", "no-such-pump"], 1, UNKNOWN_DEVICE),
    "device stop": (["device", "stop", "no-such-pump", "--reason", "r"], 1, UNKNOWN_DEVICE),
    "device resume": (["device", "resume", "no-such-pump", "--reason", "r"], 1, UNKNOWN_DEVICE),
    "malformed run id": (
        ["run", "show", "r" * 65],
        2,
        "invalid request: run_id: String should have at most 64 characters",
    ),
    "malformed trigger name": (["trigger", "fire", "a b"], 2, "'a b' is no trigger name"),
    "malformed device name": (
        ["device", "values", "a b"], 2, "'a b' is not a name a task can target"
    ),
    "malformed workflow id": (
        ["run", "workflow", "w" * 65],
        2,
        "invalid request: workflow_id: String should have at most 64 characters",
    ),
}  # fmt: skip


def error_line(result: Result) -> str:
    """The one error line of a command that failed cleanly, without its "error: "."""
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.stdout == "", result.stdout  # nothing a script would take for an answer
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0].removeprefix("error: ")


@pytest.mark.parametrize(("args", "code", "said"), API_COMMANDS.values(), ids=list(API_COMMANDS))
def test_an_unknown_or_malformed_id_is_an_error(
    live_url: str, args: list[str], code: int, said: str
) -> None:
    result = CliRunner().invoke(app, [*args, "--url", live_url])
    assert result.exit_code == code, result.output
    assert said in error_line(result)


@pytest.mark.parametrize(
    "args",
    [["task", "run", "1"], ["trigger", "fire", "batch"], ["device", "stop", "p", "--reason", "r"]],
    ids=["task run", "trigger fire", "device stop"],
)
def test_a_refusal_of_the_api_is_an_error(
    live_url: str, make_token: object, args: list[str]
) -> None:
    viewer = make_token("viewer")  # type: ignore[operator]
    result = CliRunner().invoke(app, [*args, "--url", live_url, "--token", viewer])
    assert result.exit_code == 1, result.output
    assert error_line(result) == "your role (viewer) may not do this (run.control) [forbidden]"


@pytest.mark.parametrize(
    "args", [["task", "show", "abc"], ["rollout", "cancel", "1.5"]], ids=["task", "rollout"]
)
def test_an_id_that_is_not_a_number_is_a_usage_error(args: list[str], tmp_path: Path) -> None:
    code, line = failing_tme([*args, "--url", "http://127.0.0.1:9"], tmp_path)
    assert code == 2
    assert line.startswith("error: Invalid value for"), line


class _BadGateway(BaseHTTPRequestHandler):
    """A proxy whose controller is down: 502 and its HTML page, to every request."""

    def _answer(self) -> None:
        body = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        self.send_response(502)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def bad_gateway_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BadGateway)
    # polled often: shutdown() waits for the loop to look (0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.parametrize(
    "args",
    [["task", "show", "1"], ["run", "show", "r-1"], ["trigger", "fire", "batch"]],
    ids=["task show", "run show", "trigger fire"],
)
def test_a_server_error_is_an_error(bad_gateway_url: str, args: list[str]) -> None:
    result = CliRunner().invoke(app, [*args, "--url", bad_gateway_url])
    assert result.exit_code == 1, result.output
    assert error_line(result) == "HTTP 502: 502 Bad Gateway [http_error]"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["user", "disable", "no-such-user"], "user 'no-such-user' does not exist [not_found]"),
        (["token", "revoke", "999999"], "token 999999 does not exist [not_found]"),
        (
            ["token", "create", "no-such-user", "--name", "ci"],
            "user 'no-such-user' does not exist [not_found]",
        ),
        (
            ["token", "list", "--user", "no-such-user"],
            "user 'no-such-user' does not exist [not_found]",
        ),
    ],
    ids=["user disable", "token revoke", "token create", "token list --user"],
)
def test_an_unknown_user_or_token_is_an_error(
    app_settings: object, app_engine: object, args: list[str], said: str
) -> None:
    db = str(app_settings.database.url)  # type: ignore[attr-defined]
    result = CliRunner().invoke(app, [*args, "--db", db])
    assert result.exit_code == 1, result.output
    assert error_line(result) == said
