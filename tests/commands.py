"""Commands for tests: a valid one by default, any field overridden."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tme.protocol import Command, utcnow


def make_command(site: str = "s1", agent: str = "a1", op: str = "noop", **fields: Any) -> Command:
    """A command for `agent` at `site`, due in five minutes, with `fields` over that."""
    values: dict[str, Any] = dict(
        task_id=1,
        site=site,
        agent=agent,
        op=op,
        timeout_s=10,
        not_after=utcnow() + timedelta(minutes=5),
    )
    values.update(fields)
    return Command.model_validate(values)
