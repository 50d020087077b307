"""Driver names, as device configs spell them, mapped to lazy import paths.

Nothing is imported until a driver is created, so an agent that only speaks
Modbus never imports pyserial's URL handlers. Third-party drivers register
under the entry point group `tme.drivers` (name = "package.module:factory");
the installed plug-ins are only looked up for a name that is not built in, since
importlib.metadata alone costs a small agent about 1 MB.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from tme.drivers.base import Driver
from tme.errors import ConfigError, UnknownName

ENTRY_POINT_GROUP = "tme.drivers"
BUILTIN_DRIVERS = {
    "modbus_tcp": "tme.drivers.modbus:modbus_tcp",
    "modbus_rtu": "tme.drivers.modbus:modbus_rtu",
    "serial": "tme.drivers.serial:serial_driver",
    "builtin": "tme.drivers.builtin_driver:BuiltinDriver",
}


def known_drivers() -> dict[str, str]:
    """Built-in names, then installed plug-ins (a plug-in cannot shadow a built-in)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN_DRIVERS}


def _load(path: str) -> Any:
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def create_driver(name: str, **connection: Any) -> Driver:
    """Build (not start) the driver called `name` with its connection settings."""
    drivers = BUILTIN_DRIVERS if name in BUILTIN_DRIVERS else known_drivers()
    if name not in drivers:
        close = difflib.get_close_matches(name, list(drivers), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownName(f"unknown driver {name!r}{hint} (known: {', '.join(sorted(drivers))})")
    try:
        factory = _load(drivers[name])
    except (ImportError, AttributeError) as exc:  # a plug-in installed broken or half
        raise ConfigError(
            f"driver {name!r} ({drivers[name]}) cannot be loaded: {exc}", key=name
        ) from None
    try:
        driver = factory(**connection)
    except TypeError as exc:
        raise ConfigError(f"driver {name!r}: bad connection settings: {exc}", key=name) from None
    if not isinstance(driver, Driver):
        raise ConfigError(f"driver {name!r} does not implement start/stop/bus_key", key=name)
    return driver
