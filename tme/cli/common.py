"""What every CLI command that talks to a TME server shares.

The connection options (--url/TME_URL, --token/TME_TOKEN), --json, building a
client, and turning SDK errors into one readable line and an exit code: 2 when
the input was wrong (usage or validation), 1 for everything else (an id or a name
that does not exist, a refusal, any other answer of 4xx or 5xx). No traceback
reaches the user, including when the server cannot be reached. `fail_with` is that
one path: `cli_errors` (every command's) and the entry point's last resort use it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer

from tme.cli.output import fail
from tme.config_errors import hide_url_password
from tme.errors import APIError, TMEError, ValidationError

if TYPE_CHECKING:
    from tme.client import Client

USAGE_EXIT = 2  # like click's own usage errors, so scripts can tell "fix your input"

UrlOption = Annotated[
    str | None,
    typer.Option("--url", envvar="TME_URL", help="TME server (default http://127.0.0.1:8000)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="TME_TOKEN", help="API token.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
# A command that asks an agent (a stop, a check): wait for its answer, and how long.
WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the agent's answer.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Give up after SECONDS.")]

F = TypeVar("F", bound=Callable[..., Any])


def usage_error(message: str) -> NoReturn:
    """A value the user typed cannot be understood: one line, exit 2."""
    fail(message, USAGE_EXIT)


def describe(exc: TMEError) -> str:
    """One line for an error; a validation error names each field that is wrong."""
    if isinstance(exc, ValidationError) and exc.field_errors:
        from tme.client.calls import summarize

        named = all(str(e.get("field", "")) in exc.message for e in exc.field_errors)
        return exc.message if named else f"{exc.message} ({summarize(exc.field_errors)})"
    if isinstance(exc, APIError):
        return f"{exc.message} [{exc.code}]"
    return exc.message


def exit_code(exc: Exception) -> int:
    """2 when the input was wrong (a validation error: a malformed id or value), else 1."""
    return USAGE_EXIT if isinstance(exc, ValidationError) else 1


def fail_with(exc: TMEError | TimeoutError) -> NoReturn:
    """End the command for an error: its one line on stderr (the API's message, with its
    code) and its exit code."""
    fail(describe(exc) if isinstance(exc, TMEError) else str(exc), exit_code(exc))


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn what the SDK raises into one line and the right exit code."""
    try:
        yield
    except (TMEError, TimeoutError) as exc:
        fail_with(exc)


@contextmanager
def database_errors(url: str) -> Iterator[None]:
    """Turn a database that cannot be reached or a malformed URL into one line, exit 1.

    SQLAlchemy's errors are translated here, where the CLI's database commands meet
    them; the message names the URL with its password hidden.
    """
    from sqlalchemy.exc import ArgumentError, DBAPIError

    try:
        yield
    except ArgumentError as exc:  # a URL SQLAlchemy cannot parse, or an unknown dialect
        fail(f"database URL {_hide_password(url)!r}: {exc}")
    except ValueError as exc:  # a URL SQLAlchemy parses but cannot use (a port "abc")
        if _url_error(url) is None:
            raise  # the URL is fine: this error is about something else
        fail(f"database URL {_hide_password(url)!r}: {exc}")
    except ModuleNotFoundError as exc:  # a dialect whose driver is not installed
        fail(f"database URL {_hide_password(url)!r}: driver not installed ({exc})")
    except DBAPIError as exc:  # the server refused, the file cannot be opened, ...
        reason = str(exc.orig or exc).strip().splitlines()[0]
        fail(f"cannot use the database at {_hide_password(url)}: {reason}")
    except OSError as exc:  # the folder of a SQLite file cannot be created
        fail(f"cannot use the database at {_hide_password(url)}: {exc}")


def _url_error(url: str) -> Exception | None:
    """Why SQLAlchemy cannot parse this URL, or None when it can."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url)
    except (ArgumentError, ValueError) as exc:
        return exc
    return None


def _hide_password(url: str) -> str:
    """The URL with its password as ***, also when SQLAlchemy cannot parse it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return hide_url_password(url)


@contextmanager
def connect(url: str | None, token: str | None) -> Iterator[Client]:
    """A client for the duration of one command, with its errors made readable."""
    from tme.client import Client  # the SDK loads only for commands that use it

    with cli_errors(), Client(url, token) as client:
        yield client


def extra_options(params: Sequence[inspect.Parameter], into: str) -> Callable[[F], F]:
    """Add a shared group of typer options to a command and hand them over as one dict.

    Commands that accept the same fields (task create and update) declare them
    once; typer reads the combined signature, the command receives
    `into={name: value}`.
    """
    names = [p.name for p in params]

    def decorate(func: F) -> F:
        signature = inspect.signature(func, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != into]

        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            group = {name: kwargs.pop(name, None) for name in names}
            return func(*args, **{into: group}, **kwargs)

        # Arguments first, then the shared group, then the command's own options;
        # keyword-only throughout since typer passes every value by name.
        required = [p for p in kept if p.default is inspect.Parameter.empty]
        optional = [p for p in kept if p.default is not inspect.Parameter.empty]
        ordered = [*required, *params, *optional]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in ordered]
        )
        return command  # type: ignore[return-value]

    return decorate


def option(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
    """A keyword-only parameter for `extra_options` (annotation: Annotated[T, typer.Option])."""
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )
