"""How a notification leaves TME: an email over SMTP or a signed JSON webhook."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import smtplib
import socket
import threading
from collections.abc import Coroutine, Sequence
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx

from tme.controller.notifications.targets import Network, refused_network

SIGNATURE_HEADER = "X-TME-Signature"
# Of a receiver's answer only the start is kept (for the error of a refusal); what
# comes after is never read, so an endless answer costs nothing.
MAX_ANSWER_BYTES = 4096

_T = TypeVar("_T")


class DeliveryFailed(Exception):
    """One attempt failed; the notifier retries with backoff."""


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC>` of the exact body, as the receiver recomputes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(
    url: str,
    secret: str,
    payload: dict[str, Any],
    delivery_id: int,
    timeout_s: float,
    refused: Sequence[Network] = (),
) -> None:
    """POST the signed payload; DeliveryFailed unless the receiver answers 2xx within
    `timeout_s` in total (connecting, sending and reading the answer all count), or
    when the URL's host is, or resolves to, an address in one of the `refused` networks
    (the request then goes to the address checked, never to a second lookup's)."""
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "TME-notifier",
        "Accept-Encoding": "identity",  # the answer is read raw, a few KB at most
        "X-TME-Event": str(payload.get("event", "")),
        "X-TME-Delivery": str(delivery_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        status, answer = _run_within(_post(url, body, headers, timeout_s, refused), timeout_s)
    except TimeoutError as exc:
        raise DeliveryFailed(f"no complete answer within {timeout_s:g} s") from exc
    except (httpx.InvalidURL, httpx.UnsupportedProtocol, UnicodeError, ValueError) as exc:
        # The message may quote parts of the URL, which may hold a token: the name only.
        raise DeliveryFailed(f"{type(exc).__name__}: the URL cannot be used") from exc
    except (httpx.HTTPError, OSError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if status >= 300:
        raise DeliveryFailed(f"HTTP {status}: {answer.decode(errors='replace')[:200]}")


def _run_within(coroutine: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
    """Run `coroutine` on a loop of its own, cancelled after `timeout_s`.

    Not `asyncio.run`: its exit waits for the loop's executor, where a name lookup
    that hangs would hold this thread past the deadline. Here that lookup is left to
    end on its own.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(_within(coroutine, timeout_s))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


async def _within(coroutine: Coroutine[Any, Any, _T], timeout_s: float) -> _T:
    async with asyncio.timeout(timeout_s):
        return await coroutine


async def _post(
    url: str, body: bytes, headers: dict[str, str], timeout_s: float, refused: Sequence[Network]
) -> tuple[int, bytes]:
    """(status, the first bytes of the answer): a receiver that drips its answer
    is not waited for beyond what the caller's deadline allows."""
    target = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if refused:
        address = await _allowed_address(target, refused)
        if address != target.host:
            # to the address checked: a name that resolves elsewhere the second time
            # (DNS rebinding) cannot take the request there
            headers = {**headers, "Host": target.netloc.decode("ascii")}
            extensions["sni_hostname"] = target.host
            target = target.copy_with(host=address)
    async with (
        httpx.AsyncClient(timeout=timeout_s) as client,
        client.stream(
            "POST", target, content=body, headers=headers, extensions=extensions
        ) as response,
    ):
        answer = b""
        if response.status_code >= 300:  # a 2xx answer's body is never read
            async for chunk in response.aiter_raw():
                answer += chunk
                if len(answer) >= MAX_ANSWER_BYTES:
                    break
        return response.status_code, answer[:MAX_ANSWER_BYTES]


async def _allowed_address(url: httpx.URL, refused: Sequence[Network]) -> str:
    """The address to post to: the URL's host when it is an address, else the first its
    name resolves to; DeliveryFailed when it, or any address of the name, is refused."""
    try:
        addresses = [ipaddress.ip_address(url.host)]
    except ValueError:
        port = url.port or (443 if url.scheme == "https" else 80)
        loop = asyncio.get_running_loop()
        try:
            found = await loop.getaddrinfo(url.host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DeliveryFailed(f"the URL's host {url.host} could not be resolved: {exc}") from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in found))
    for address in addresses:
        network = refused_network(address, refused)
        if network is not None:
            said = "is" if str(address) == url.host else f"resolves to {address}, which is"
            raise DeliveryFailed(
                f"the URL's host {url.host} {said} in {network}, a network webhooks may not"
                " reach (notifications.webhook_refused_networks)"
            )
    return str(addresses[0])


def send_email(email: Any, to: list[str], subject: str, text: str) -> None:
    """Send through the SMTP server of `notifications.email` settings."""
    message = EmailMessage()
    try:
        # A header with CR or LF (an address from a hand-edited config) is refused here.
        message["From"] = email.from_addr or "tme@localhost"
        message["To"] = ", ".join(to)
        message["Subject"] = subject
    except ValueError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    message.set_content(text)
    timeout_s = float(email.timeout_s)
    smtp = smtplib.SMTP(timeout=timeout_s)
    # smtplib's timeout bounds each read; a server that dribbles a line of its answer
    # before each one runs out held a sender thread as long as it liked. At the
    # deadline the socket is shut, and the read it blocks returns.
    cut = threading.Event()
    deadline = threading.Timer(timeout_s, _cut, args=(smtp, cut))
    deadline.daemon = True
    deadline.start()
    try:
        with smtp:
            smtp.connect(email.smtp_host, email.smtp_port)
            if email.starttls:
                smtp.starttls()
            if email.username:
                smtp.login(email.username, email.password.get_secret_value())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException, ValueError) as exc:
        if cut.is_set():
            raise DeliveryFailed(f"no complete exchange within {timeout_s:g} s") from exc
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    finally:
        deadline.cancel()


def _cut(smtp: smtplib.SMTP, cut: threading.Event) -> None:
    """End the exchange at its deadline: shut the socket under whatever read waits."""
    cut.set()
    sock = smtp.sock
    if sock is None:
        return
    with contextlib.suppress(OSError):  # already closed
        sock.shutdown(socket.SHUT_RDWR)
