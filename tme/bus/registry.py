"""Choose a bus transport by URL scheme; transports are imported only when chosen."""

from __future__ import annotations

import difflib
import importlib
from typing import Any
from urllib.parse import urlsplit

from tme.bus.base import Bus
from tme.errors import UnknownName

# scheme -> "module:factory"; the factory takes (url, BusOptions) and returns a Bus.
TRANSPORTS: dict[str, str] = {
    "amqp": "tme.bus.amqp:AmqpBus",
    "amqps": "tme.bus.amqp:AmqpBus",
    "memory": "tme.bus.memory:MemoryBus",
}


def open_bus(url: str, **options: Any) -> Bus:
    """Build (not start) the bus for `url`: amqp://, amqps:// or memory://name."""
    from tme.bus.options import BusOptions

    problem = transport_problem(url)
    if problem is not None:
        raise UnknownName(problem)
    module_name, _, attr = TRANSPORTS[urlsplit(url).scheme.lower()].partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    bus: Bus = factory(url, BusOptions.from_kwargs(options))
    return bus


def transport_problem(url: str) -> str | None:
    """Why no transport takes `url` (its scheme is none of theirs), or None: checked by
    open_bus and, before anything starts, by `tme demo --broker`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in TRANSPORTS:
        return None
    close = difflib.get_close_matches(scheme, TRANSPORTS, n=1)
    hint = f"; did you mean {close[0]}://?" if close else ""
    known = ", ".join(f"{name}://" for name in TRANSPORTS)
    return f"no bus transport for {url.split('://')[0]!r}:// (known: {known}){hint}"
