"""TME, a task management engine for machinery at remote sites.

`tme.Client` and `tme.AsyncClient` are the Python SDK. They are imported lazily so
that edge processes importing `tme` core pull in nothing they do not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tme.client import AsyncClient, Client

__all__ = ["AsyncClient", "Client", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from tme import client

        return getattr(client, name)
    raise AttributeError(f"module 'tme' has no attribute {name!r}")
