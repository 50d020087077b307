"""Site and role checks on what a task write asks for, beyond the route's permission.

The route's permission says a role may write tasks at all; these say where: a
principal scoped to sites must name one of them, and only roles that manage
schedules may set one.
"""

from __future__ import annotations

from typing import Any

from tme.controller.services.roles import Permission, Principal
from tme.errors import Forbidden


def check_target_site(principal: Principal, site: str | None) -> None:
    if principal.sees_site(site):
        return
    granted = ", ".join(principal.sites) or "none"
    if site is None:
        raise Forbidden(
            f"your access covers sites {granted} only: give target.site",
            details={"sites": list(principal.sites)},
        )
    raise Forbidden(
        f"you have no access to site {site!r} (yours: {granted})",
        details={"site": site, "sites": list(principal.sites)},
    )


def check_schedule(principal: Principal, schedule: Any) -> None:
    if schedule is not None and not principal.can(Permission.schedule_manage):
        raise Forbidden(
            f"setting a schedule needs the engineer role (you are {principal.role})",
            details={"role": principal.role.value},
        )


def check_task_create(principal: Principal, body: Any) -> None:
    target = getattr(body, "target", None)
    check_target_site(principal, target.site if target is not None else None)
    check_schedule(principal, getattr(body, "schedule", None))


def check_task_update(principal: Principal, changes: dict[str, Any]) -> None:
    """`changes` are the fields the update sets (TaskUpdate.field_changes)."""
    if "target" in changes:
        target = changes["target"]
        check_target_site(principal, target.site if target is not None else None)
    if "schedule" in changes:
        check_schedule(principal, changes["schedule"] or "cleared")


def site_scope(principal: Principal) -> tuple[str, ...] | None:
    """The sites a listing is limited to; None: all (tasks without a site included)."""
    return None if principal.all_sites else principal.sites
