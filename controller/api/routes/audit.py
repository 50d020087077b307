"""/api/v1/audit (admin): the audit log, newest first, as JSON pages or CSV."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from tme.admin_schemas import AuditEntryPublic, AuditPage, check_time_range, in_utc_if_naive
from tme.controller.api.deps import PrincipalDep, SessionDep, TimeQuery
from tme.controller.csv_text import CSV_DOC, csv_response, csv_text
from tme.controller.services import audit
from tme.controller.services.access import check_all_sites
from tme.controller.store.security_models import AuditEntry

router = APIRouter(prefix="/api/v1", tags=["audit"])

CSV_COLUMNS = ["id", "at", "actor", "action", "target", "outcome", "client", "details", "hash"]
MAX_CSV_ROWS = 100_000


Text = Annotated[str | None, Query(min_length=1, max_length=64)]


def _filters(
    actor: Text = None,
    action: Annotated[
        str | None, Query(min_length=1, max_length=64, description="prefix, e.g. auth.")
    ] = None,
    outcome: Annotated[Literal["ok", "failed", "refused"] | None, Query()] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> audit.AuditFilters:
    check_time_range(since, until)
    return audit.AuditFilters(
        actor, action, outcome, in_utc_if_naive(since), in_utc_if_naive(until)
    )


def _whole_log(principal: PrincipalDep) -> None:
    """The log is of every site (its rows name other sites' tasks, devices and users, and
    have no site to filter on): for a grant of all sites, as /metrics is."""
    check_all_sites(principal, "the audit log")


def _csv(rows: list[AuditEntry]) -> Response:
    def cells(row: AuditEntry) -> list[Any]:
        values = row.model_dump()
        values["at"] = row.at.isoformat()
        values["details"] = json.dumps(row.details, sort_keys=True)
        return [values[c] for c in CSV_COLUMNS]

    return csv_response(csv_text(CSV_COLUMNS, map(cells, rows)), "tme-audit.csv")


@router.get("/audit", response_model=AuditPage, responses=CSV_DOC)
def list_audit(
    session: SessionDep,
    principal: PrincipalDep,
    actor: Text = None,
    action: Annotated[
        str | None, Query(min_length=1, max_length=64, description="prefix, e.g. auth.")
    ] = None,
    outcome: Annotated[Literal["ok", "failed", "refused"] | None, Query()] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(gt=0, le=2**63 - 1)] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
) -> Any:
    _whole_log(principal)
    filters = _filters(actor, action, outcome, since, until)
    if format == "csv":
        return _csv(audit.query(session, filters, limit=MAX_CSV_ROWS, before_id=before_id))
    rows = audit.query(session, filters, limit=limit + 1, before_id=before_id)
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(
        items=[AuditEntryPublic.model_validate(r) for r in rows],
        next_before_id=rows[-1].id if more and rows else None,
    )


@router.get("/audit.csv", response_class=Response, responses=CSV_DOC)
def export_audit(
    session: SessionDep,
    principal: PrincipalDep,
    actor: Text = None,
    action: Annotated[
        str | None, Query(min_length=1, max_length=64, description="prefix, e.g. auth.")
    ] = None,
    outcome: Annotated[Literal["ok", "failed", "refused"] | None, Query()] = None,
    since: TimeQuery = None,
    until: TimeQuery = None,
) -> Response:
    _whole_log(principal)
    filters = _filters(actor, action, outcome, since, until)
    return _csv(audit.query(session, filters, limit=MAX_CSV_ROWS))
