"""What the sync and async clients share apart from the calls: where the server is,
how a request is addressed and authorised, how network failures surface, and the
bookkeeping of waiting for a task to finish.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from tme import __version__
from tme.client.calls import Call
from tme.config_errors import hide_url_password
from tme.errors import AuthError, TransportError, ValidationError
from tme.schemas import TaskPublic
from tme.states import FINAL_STATES, STATUS_WORDS

DEFAULT_URL = "http://127.0.0.1:8000"


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """httpx's default TLS verification (its CA bundle, or SSL_CERT_FILE/SSL_CERT_DIR
    as set when the first client is built), built once per process. Left to httpx,
    every client builds its own, loading the CA bundle again: about 25 ms of CPU per
    client, which a program opening a client per thread or per job pays each time. A
    context is safe to share between clients and threads."""
    return httpx.create_ssl_context()


_FINAL_WORDS = {s.value for s in FINAL_STATES} | {
    word for word, state in STATUS_WORDS.items() if state in FINAL_STATES
}


@dataclass(frozen=True)
class Connection:
    """The server a client talks to and the token it presents."""

    url: str
    token: str | None

    @classmethod
    def resolve(
        cls, url: str | None, token: str | None, http_client: httpx.BaseTransport | Any = None
    ) -> Connection:
        """Explicit arguments win, then the given HTTP client's base URL, then TME_URL/TME_TOKEN.

        Read when a client is built, never at import, so tests and scripts can set
        the environment late.
        """
        base = str(getattr(http_client, "base_url", "") or "")
        # A URL read from a file or pasted keeps its spaces or line end, which made it
        # "missing an 'http://' or 'https://' protocol".
        given_url = (url or "").strip() or base or os.environ.get("TME_URL", "").strip()
        resolved = given_url or DEFAULT_URL
        # A token read from a file keeps its line end; the server strips it too. An empty
        # token given is none at all (an anonymous client), not "read TME_TOKEN".
        given = (token if token is not None else os.environ.get("TME_TOKEN") or "").strip()
        return cls(resolved.rstrip("/"), given or None)

    def request_args(self, call: Call[Any]) -> dict[str, Any]:
        """Keyword arguments for httpx's `request()` (shared by both clients)."""
        headers = {"User-Agent": f"tme-sdk/{__version__}", **call.headers}
        if self.token:
            if not is_token_text(self.token):
                # Never sent, and never repeated: an error message ends up in logs.
                raise AuthError(
                    "malformed token: it holds a space, a control or a non-ASCII character,"
                    " which no TME token has (was it copied whole?)"
                )
            headers["Authorization"] = f"Bearer {self.token}"
        return {
            "method": call.method,
            "url": self.url + call.path,
            "params": call.params or None,
            "json": call.json,
            "headers": headers,
        }

    @contextmanager
    def translate_errors(self) -> Iterator[None]:
        """Turn httpx's network failures into TME's TransportError, once, where they enter."""
        try:
            yield
        except httpx.TimeoutException as exc:
            # The async transport's timeouts have no text; the sync one's say "timed out".
            why = f"TME at {self.url} did not answer in time ({str(exc) or 'timed out'})"
            raise TransportError(self._without_secrets(why)) from exc
        except httpx.ConnectError as exc:
            why = f"cannot reach TME at {self.url}: {connect_failure(exc)}"
            raise TransportError(self._without_secrets(why)) from exc
        except httpx.DecodingError as exc:  # a proxy's broken gzip: it escaped as httpx's
            why = f"the answer of TME at {self.url} cannot be decoded ({exc})"
            raise TransportError(self._without_secrets(why)) from exc
        except (httpx.RequestError, httpx.InvalidURL) as exc:
            why = self._without_secrets(f"cannot reach TME at {self.url}: {exc}")
            raise TransportError(why) from exc

    def _without_secrets(self, text: str) -> str:
        """httpx's text may quote the request's headers: the token never goes further;
        nor does a password in the URL (a proxy's user:password@). The token is replaced
        where it stands alone, not inside a word: a short one ("t") turned "cannot reach
        TME at http://..." into "canno<token> reach TME a<token> h<token><token>p://..."."""
        if self.token:
            alone = rf"(?<![\w-]){re.escape(self.token)}(?![\w-])"
            text = re.sub(alone, "<token>", text)
        return hide_url_password(text)


def connect_failure(exc: httpx.ConnectError) -> str:
    """Why a connection failed, as the OS said it ("[Errno 111] Connection refused"), the
    same from both clients: the async one's own text is "All connection attempts failed",
    its causes (one per address tried) holding what the OS said. TLS errors keep their
    text; with no OS error found, httpx's text stands."""
    reasons: list[str] = []
    pending: list[BaseException] = [exc]
    seen: set[int] = set()  # a chain may loop back on itself
    while pending:
        error = pending.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        elif isinstance(error, ssl.SSLError) or (isinstance(error, OSError) and error.errno):
            reasons.append(os_words(error))
        elif (cause := error.__cause__ or error.__context__) is not None:
            pending.append(cause)
    return "; ".join(dict.fromkeys(reasons)) or str(exc)


def os_words(error: OSError) -> str:
    """An OS error in the words the sync client uses: asyncio's text for a refused
    connection is "Connect call failed ('127.0.0.1', 9)"; an address lookup's errno is
    negative, with no os.strerror of its own."""
    if isinstance(error, ssl.SSLError) or not error.errno or error.errno < 0:
        return str(error)
    return f"[Errno {error.errno}] {os.strerror(error.errno)}"


def request_timeout(value: float | None) -> float | None:
    """A client's `timeout` as httpx takes it: None (or infinity) for no limit. Refused when
    no request could use it (ValidationError naming timeout, as the client is built): 0
    made every connection fail with "[Errno 115] Operation now in progress", a negative
    or NaN one raised ValueError at the first request, a text TypeError, infinity
    OverflowError."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        problem = f"must be more than 0 seconds, or None for no limit (got {value!r})"
        raise ValidationError(
            f"timeout: {problem}",
            field_errors=[{"field": "timeout", "message": problem, "type": "value_error"}],
        )
    return None if math.isinf(value) else float(value)


def check_http_client(http_client: Any, awaited: bool) -> None:
    """Refuse an HTTP client of the other kind as the SDK client is built (TypeError): an
    httpx.AsyncClient given to tme.Client failed at the first call (a coroutine has no
    status, never awaited), an httpx.Client given to tme.AsyncClient blocked the event
    loop on each request. Told by its `request`, so any client of the right shape goes."""
    request = getattr(http_client, "request", None)
    if http_client is None or inspect.iscoroutinefunction(request) == awaited:
        return
    wanted, twin = ("an async", "tme.Client") if awaited else ("a blocking", "tme.AsyncClient")
    raise TypeError(
        f"http_client must be {wanted} HTTP client (got {type(http_client).__name__}); "
        f"{'a blocking' if awaited else 'an async'} one goes with {twin}"
    )


def is_token_text(token: str) -> bool:
    """Whether `token` has only what a TME token can: visible ASCII, no space."""
    return all("!" <= c <= "~" for c in token)


def is_final(status: str) -> bool:
    """Whether a task status is a final state (its latest run will not move on)."""
    return status in _FINAL_WORDS


def is_done(task: TaskPublic) -> bool:
    """Whether the task's outcome stands: its status is final and settled, so no
    automatic retry is on its way to become its latest run (docs/api.md, "Status and
    settled"). A controller that predates `settled` does not send it: its status alone
    counts, as it did then."""
    settled = task.settled or "settled" not in task.model_fields_set
    return is_final(task.status) and settled


def _not_started_why(task: TaskPublic | None) -> str:
    """Why a task that never ran may not have started: it is paused, or it is a dependent
    (no schedule or trigger of its own), which starts only in a workflow run."""
    if task is None:
        return ""
    if task.paused:
        return " (it is paused: its schedule, trigger and dependencies start nothing)"
    if task.depends_on and task.schedule is None and not task.trigger:
        ids = [dep.task for dep in task.depends_on]
        named = f"task {ids[0]} settles" if len(ids) == 1 else f"tasks {ids} settle"
        return f" (it starts only as a dependent, once {named} in a workflow run)"
    return ""


def check_seconds(field: str, value: float) -> float:
    """A wait's seconds, refused (ValidationError naming `field`) when no wait can use
    them: NaN never compares, so a wait for NaN seconds never ended; a negative time
    ended before the first look. Infinity waits for good."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        problem = f"must be a number of seconds (got {value!r})"
    elif math.isnan(value) or value < 0:
        problem = f"must be 0 or more seconds (got {value!r})"
    else:
        return float(value)
    raise ValidationError(
        f"{field}: {problem}",
        field_errors=[{"field": field, "message": problem, "type": "value_error"}],
    )


class WaitDeadline:
    """The deadline of `tasks.wait()`: tells when a task is done and how long to pause."""

    def __init__(self, task_id: int, timeout: float, poll_s: float) -> None:
        timeout, poll_s = check_seconds("timeout", timeout), check_seconds("poll_s", poll_s)
        self.task_id = task_id
        self.timeout = timeout
        self.poll_s = max(poll_s, 0.01)
        self.deadline = time.monotonic() + timeout
        self.last: TaskPublic | None = None

    def done(self, task: TaskPublic) -> bool:
        self.last = task
        return is_done(task)

    def pause(self) -> float:
        """Seconds to sleep before the next poll; TimeoutError once the deadline passed."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(self._why())
        return min(self.poll_s, remaining)

    def _why(self) -> str:
        status = self.last.status if self.last else "unknown"
        if not is_final(status):
            why = _not_started_why(self.last) if status == "idle" else ""
            return f"task {self.task_id} still {status!r} after {self.timeout:g}s{why}"
        return (
            f"task {self.task_id} {status!r} after {self.timeout:g}s, but not settled: TME's"
            " scheduler has not acted on it yet, so an automatic retry may still follow (is a"
            " controller running that holds the scheduler lease?)"
        )
