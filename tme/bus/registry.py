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

    scheme = urlsplit(url).scheme.lower()
    target = TRANSPORTS.get(scheme)
    if target is None:
        close = difflib.get_close_matches(scheme, TRANSPORTS, n=1)
        hint = f"; did you mean {close[0]}://?" if close else ""
        known = ", ".join(f"{name}://" for name in TRANSPORTS)
        raise UnknownName(f"no bus transport for {url.split('://')[0]!r}:// (known: {known}){hint}")
    module_name, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    bus: Bus = factory(url, BusOptions.from_kwargs(options))
    return bus
