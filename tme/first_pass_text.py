"""What a device stop's first writes did, in words, from `result.first_pass` as its agent
said it (agents/operations.py): `tme device stop` and `tme run show` print these lines,
the controller logs them on the stop's run when the agent says them, and the dashboard's
run page shows them:

    safe values written at 06:00:01.052 UTC: run = false, speed_setpoint = 0
    holding them 2.0 s, until 06:00:03.052 UTC: a write the stop cut off may land until
    then; its agent writes them again then

A result comes from agents of any version: what is not a first pass gives None."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any


def first_pass_of(result: Any) -> dict[str, Any] | None:
    """The stop's first writes as its agent said them (None: not said yet, not a stop, or
    an agent that does not say it)."""
    found = result.get("first_pass") if isinstance(result, dict) else None
    return found if isinstance(found, dict) else None


def not_written(first: dict[str, Any]) -> bool:
    """Whether a safe value could not be written (the device may not be safe)."""
    return bool(first.get("not_written"))


def hold_of(first: dict[str, Any]) -> float:
    """Seconds the stop holds the safe values before writing them again (0: it does not)."""
    hold = first.get("hold_s")
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not hold > 0:
        return 0.0
    return float(hold)


def first_pass_lines(first: dict[str, Any], ended: bool) -> list[str]:
    """The first writes, then (unless the run `ended`) the hold that follows them."""
    at = time_of_day(first.get("at"))
    written = values_text(first.get("written"))
    errors = first.get("not_written")
    if errors:
        said = (
            "; ".join(f"{point}: {error}" for point, error in errors.items())
            if isinstance(errors, dict)
            else str(errors)
        )
        lines = [f"SAFE VALUES NOT WRITTEN at {at}: {said} (written: {written or 'nothing'})"]
    else:
        lines = [f"safe values written at {at}: {written or 'nothing'}"]
    hold_s = hold_of(first)
    if not ended and hold_s > 0:
        until = time_of_day(first.get("at"), hold_s)
        lines.append(
            f"holding them {hold_s:.1f} s, until {until}: a write the stop cut off may land"
            " until then; its agent writes them again then"
        )
    return lines


def values_text(values: Any) -> str:
    """Points and their values as written: `run = false, speed_setpoint = 0`."""
    if not isinstance(values, dict):
        return ""
    return ", ".join(f"{point} = {json.dumps(value)}" for point, value in values.items())


def time_of_day(at: Any, plus_s: float = 0.0) -> str:
    """The agent's time of day in UTC to the millisecond, or as given when unreadable."""
    try:
        when = datetime.fromisoformat(str(at)).astimezone(UTC) + timedelta(seconds=plus_s)
    except (ValueError, OverflowError):
        return str(at)
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d} UTC"
