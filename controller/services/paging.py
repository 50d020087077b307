"""Keyset pagination: page 1,000 costs what page 1 costs.

A cursor is the opaque, URL-safe encoding of the last row's sort key.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from tme.errors import ValidationError

MAX_PAGE = 1000
MAX_ROW_ID = 64  # characters of a row id in a cursor: the id columns' size (runs: 36)


def encode_cursor(*key: Any) -> str:
    raw = json.dumps(list(key), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def id_page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """The first `limit` of `rows` (fetched as `limit + 1`, newest first by id) and the
    cursor of the page after them, None when there is none."""
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise _bad_cursor() from exc
    if not isinstance(key, list) or len(key) != arity:
        raise _bad_cursor()
    return key


def decode_id_cursor(cursor: str) -> int:
    """The last id of a page ordered by id; anything else is a client error, not a 500."""
    (last_id,) = decode_cursor(cursor, 1)
    if type(last_id) is not int or not 0 < last_id < 2**63:
        raise _bad_cursor()
    return last_id


def decode_time_id_cursor(cursor: str) -> tuple[datetime, str]:
    """The (timestamp in UTC, id) of the last row of a page ordered by time then id.

    A key no query can bind is a client error too, found here rather than as a 500
    where the query runs: a time outside the calendar once in UTC, an id that is not
    storable text (a lone surrogate, a NUL) or longer than any id.
    """
    when, row_id = decode_cursor(cursor, 2)
    if not isinstance(when, str) or not isinstance(row_id, str):
        raise _bad_cursor()
    if len(row_id) > MAX_ROW_ID or "\x00" in row_id:
        raise _bad_cursor()
    try:
        at = datetime.fromisoformat(when)
        in_utc = at.astimezone(UTC) if at.tzinfo is not None else None
        row_id.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    except (ValueError, OverflowError) as exc:
        raise _bad_cursor() from exc
    if in_utc is None:  # cursors are written with their UTC offset
        raise _bad_cursor()
    return in_utc, row_id


def _bad_cursor() -> ValidationError:
    return ValidationError(
        "invalid cursor: pass the next_cursor of a previous page unchanged",
        field_errors=[{"field": "cursor", "message": "invalid cursor", "type": "value_error"}],
    )
