"""Bus options: the knobs `open_bus(url, **options)` takes, checked once."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

from tme.errors import ConfigError


@dataclass(frozen=True)
class BusOptions:
    # 30 s: a dead peer is noticed within two missed beats (about a minute) without
    # spending traffic on idle site links.
    heartbeat_s: int = 30
    # A connection blocked by a broker memory/disk alarm is dropped (and retried)
    # after this long instead of hanging a publisher forever.
    blocked_connection_timeout_s: float = 60.0
    # Deliveries a consumer holds at once; handlers are short, so a modest window
    # keeps throughput without hoarding messages from other gateways.
    prefetch: int = 50
    # Times a message may be returned to an events queue before it is dead-lettered.
    # RabbitMQ 3.10 has no default, so TME always sets one. Site queues have their own,
    # far higher (tme.bus.topology.SITE_DELIVERY_LIMIT).
    delivery_limit: int = 5
    # How long publish / publish_many wait for the broker's confirms (whole call).
    confirm_timeout_s: float = 30.0
    # Shown in the broker's connection list, so operators can tell TME processes apart.
    connection_name: str = "tme"
    # Reconnect backoff: first retry after reconnect_min_s, doubling up to reconnect_max_s.
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 10.0
    # Whether `start` declares the exchanges and the dead-letter queue. The controller
    # does; a gateway whose RabbitMQ user may configure nothing (least privilege) does not.
    declare_topology: bool = True

    @classmethod
    def from_kwargs(cls, options: dict[str, Any]) -> BusOptions:
        """Build options from keyword arguments, refusing unknown names and bad values."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        for key in options:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ConfigError(f"unknown bus option {key!r}{hint}", key=key)
        result = cls(**options)
        result._check()
        return result

    def _check(self) -> None:
        for name in ("heartbeat_s", "prefetch", "delivery_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"bus option {name} must be an integer >= 0", key=name)
        for name in ("blocked_connection_timeout_s", "confirm_timeout_s", "reconnect_min_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"bus option {name} must be a number > 0", key=name)
        if not isinstance(self.declare_topology, bool):
            raise ConfigError(
                "bus option declare_topology must be true or false", key="declare_topology"
            )
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("reconnect_max_s must be >= reconnect_min_s", key="reconnect_max_s")
