"""/api/v1/reports/summary (JSON) and /api/v1/reports/summary.csv over a chosen period.

Both count only runs of tasks on the caller's granted sites.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from tme.controller import reports
from tme.controller.api.deps import PrincipalDep, SessionDep, TimeQuery
from tme.controller.csv_text import CSV_DOC, csv_response
from tme.controller.services.access import site_scope
from tme.controller.store.models import utcnow
from tme.errors import ValidationError

router = APIRouter(prefix="/api/v1/reports", tags=["reports"])
READ = {"x-permission": "task.read"}

Since = Annotated[TimeQuery, Query(description="start (ISO 8601); default: `days` ago")]
Until = Annotated[TimeQuery, Query(description="end (ISO 8601); default: now")]
Days = Annotated[
    int | None,
    Query(
        ge=1,
        le=366,
        description="period length: ending at `until` (default now), or with `since` alone,"
        " starting there (default 7)",
    ),
]
DEFAULT_DAYS = 7
GroupBy = Annotated[Literal["op", "agent", "site", "task"], Query()]


def period(
    since: datetime | None, until: datetime | None, days: int | None
) -> tuple[datetime, datetime]:
    """The period asked for: since..until; with one of them and `days`, that many days
    from `since` or up to `until`; `days` alone ends now. All three is refused: `days`
    would be ignored, and a filter is never ignored."""
    if since is not None and until is not None and days is not None:
        message = "give days with since or with until, not both: since..until is the period"
        raise ValidationError(
            f"invalid request: days: {message}",
            field_errors=[{"field": "days", "message": message, "type": "value_error"}],
        )
    try:
        if since is not None and until is None and days is not None:
            end = since + timedelta(days=days)
        else:
            end = until or utcnow()
        start = since or end - timedelta(days=days or DEFAULT_DAYS)
    except OverflowError as exc:
        raise ValidationError(
            "the period reaches past the calendar's first or last day: give since and until",
            field_errors=[{"field": "until", "message": "too early", "type": "value_error"}],
        ) from exc
    if start.tzinfo is None or end.tzinfo is None:
        raise ValidationError(
            "since and until need a UTC offset, e.g. 2026-01-01T00:00:00Z",
            field_errors=[{"field": "since", "message": "no UTC offset", "type": "value_error"}],
        )
    if start >= end:
        later = "until" if until is not None else "now (no until was given)"
        raise ValidationError(
            f"since must be before {later}",
            field_errors=[{"field": "since", "message": "after until", "type": "value_error"}],
        )
    return start, end


@router.get("/summary", openapi_extra=READ)
def summary(
    session: SessionDep,
    principal: PrincipalDep,
    since: Since = None,
    until: Until = None,
    days: Days = None,
    group_by: GroupBy = "op",
) -> dict[str, Any]:
    start, end = period(since, until, days)
    report = reports.summary(session, start, end, group_by, sites_in=site_scope(principal))
    return {
        "since": report.start,
        "until": report.end,
        "group_by": report.group_by,
        "groups": [vars(g) for g in report.groups],
        "busiest_hours": [{"hour": h, "runs": n} for h, n in report.busiest_hours],
        "top_failure_reasons": [{"reason": r, "runs": n} for r, n in report.top_failure_reasons],
    }


@router.get("/summary.csv", openapi_extra=READ, response_class=Response, responses=CSV_DOC)
def summary_csv(
    session: SessionDep,
    principal: PrincipalDep,
    since: Since = None,
    until: Until = None,
    days: Days = None,
    group_by: GroupBy = "op",
) -> Response:
    start, end = period(since, until, days)
    report = reports.summary(session, start, end, group_by, sites_in=site_scope(principal))
    name = f"tme-report-{start:%Y%m%d}-{end:%Y%m%d}-{group_by}.csv"
    return csv_response(reports.summary_csv(report), name)
