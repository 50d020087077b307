"""A rule's target: which ones a rule may have, and how one is shown to a reader who
may not manage notifications.

A webhook URL is a credential as often as not (a token in the path or query, a
user:password), and an address list says who is on call: a reader who may not
manage rules sees only the scheme and host of a URL, the domain of an address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

import httpx

WEBHOOK_SCHEMES = ("http", "https")
HIDDEN = "…"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# One address, as a rule stores them (comma-separated): no spaces, no control
# characters (a CR or LF would inject a header), one @ with something either side.
_ADDRESS = re.compile(r"[^@\s,<>\"]+@[^@\s,<>\"]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_webhook_url(target: str) -> str:
    """`target` if a webhook can be posted to it, else ValueError saying why (never
    echoing the URL, which may hold a token)."""
    if _CONTROL.search(target):
        raise ValueError("a webhook URL may not contain control characters")
    try:
        url = httpx.URL(target)
    except httpx.InvalidURL:
        raise ValueError("not a valid URL") from None
    if url.scheme not in WEBHOOK_SCHEMES:
        raise ValueError("must be an http:// or https:// URL")
    if not url.host:
        raise ValueError("the URL has no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise ValueError("the URL's port is out of range")
    try:
        url.host.encode("idna")  # a label over 63 characters fails only when connecting
    except UnicodeError:
        raise ValueError("the URL's host is not a valid host name") from None
    return target


def refused_network(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, refused: Sequence[Network]
) -> Network | None:
    """The network of `refused` that `address` is in (None: none is); an IPv4 address
    written as IPv6 (::ffff:127.0.0.1) counts as the IPv4 one."""
    plain = getattr(address, "ipv4_mapped", None) or address
    return next((network for network in refused if plain in network), None)


def check_webhook_host(target: str, refused: Sequence[Network]) -> None:
    """ValueError when the URL's host is an address in a refused network (a name is
    resolved, and checked, each time a notification is sent)."""
    try:
        address = ipaddress.ip_address(httpx.URL(target).host)
    except (httpx.InvalidURL, ValueError):
        return
    network = refused_network(address, refused)
    if network is not None:
        raise ValueError(
            f"the URL's host {address} is in {network}, a network webhooks may not reach"
            " (notifications.webhook_refused_networks)"
        )


def check_addresses(target: str) -> str:
    """`target` if it is a comma-separated list of email addresses, else ValueError."""
    if _CONTROL.search(target):
        raise ValueError("email addresses may not contain control characters (CR, LF)")
    addresses = [a.strip() for a in target.split(",")]
    if not all(_ADDRESS.fullmatch(a) for a in addresses):
        raise ValueError("must be email addresses (name@domain), separated by commas")
    return target


def redact(channel: str, target: str) -> str:
    """What a reader who may not manage notifications sees of a target:
    `https://alerts.example.invalid/…` of a URL, `…@plant.example` of an address."""
    if channel == "email":
        return ", ".join(_redact_address(a.strip()) for a in target.split(",") if a.strip())
    try:
        url = httpx.URL(target)
    except (httpx.InvalidURL, UnicodeError, ValueError):
        return HIDDEN
    if url.scheme not in WEBHOOK_SCHEMES or not url.host:
        return HIDDEN
    host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}/{HIDDEN}"


def _redact_address(address: str) -> str:
    _, at, domain = address.rpartition("@")
    return f"{HIDDEN}@{domain}" if at and not _CONTROL.search(domain) else HIDDEN
