"""CSV exports that a spreadsheet opens as data, never as formulas.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read by
spreadsheets as a formula (OWASP's "CSV injection"); task names, reasons and audited
user names are typed by users, and a failed login records whatever name was sent.
Such text cells are prefixed with `'`, which spreadsheets show as plain text.
Numbers stay as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.responses import Response

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A text value that would start a formula, made plain text; any other value as is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([cell(h) for h in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


# How a CSV route documents its answer (FastAPI would say application/json).
CSV_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/csv": {"schema": {"type": "string"}}}}
}


def csv_response(text: str, filename: str) -> Response:
    """A CSV download: text/csv, saved by browsers as `filename`."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    return Response(text, media_type="text/csv", headers=headers)
