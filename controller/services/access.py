"""Site and role checks on what a task write asks for, beyond the route's permission.

The route's permission says a role may write tasks at all; these say where: a
principal scoped to sites must name one of them, and only roles that manage
schedules may set one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlmodel import Session, col

from tme.controller.services.roles import Permission, Principal
from tme.controller.store.models import Task
from tme.errors import Forbidden, NotFound, ValidationError

Query = TypeVar("Query", bound=Any)


def check_target_site(principal: Principal, site: str | None, field: str = "target.site") -> None:
    if principal.sees_site(site):
        return
    granted = ", ".join(principal.sites) or "none"
    if site is None:
        raise Forbidden(
            f"your access covers sites {granted} only: give {field}",
            details={"sites": list(principal.sites)},
        )
    raise Forbidden(
        f"you have no access to site {site!r} (yours: {granted})",
        details={"site": site, "sites": list(principal.sites)},
    )


def check_all_sites(principal: Principal, what: str) -> None:
    """Refuse a grant of some sites what covers every site and cannot be cut to them."""
    if not principal.all_sites:
        raise Forbidden(
            f"{what} covers every site: it needs a grant of all sites"
            f" (yours: {', '.join(principal.sites)})",
            details={"sites": list(principal.sites)},
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


def needs_dependency_check(principal: Principal, deps: Iterable[Any] | None) -> bool:
    return bool(deps) and not principal.all_sites


def check_dependencies_visible(
    session: Session, principal: Principal, deps: Iterable[Any] | None, item: str = ""
) -> None:
    """A predecessor on a site outside the grant is refused as one that does not exist,
    as the service refuses a missing one (same 422, same words): depending on it would
    tell its outcome and pin it against deletion. `item` names a batch item (`tasks.3`)."""
    if not needs_dependency_check(principal, deps):
        return
    errors = []
    for index, dep in enumerate(deps or ()):
        task = session.get(Task, dep.task)
        if task is not None and not principal.sees_site(task.site):
            field = f"{item}.depends_on.{index}.task" if item else f"depends_on.{index}.task"
            message = f"task {dep.task} does not exist"
            errors.append({"field": field, "message": message, "type": "value_error"})
    if errors:
        problems = "; ".join(
            f"{e['field'].removeprefix(item + '.')}: {e['message']}" for e in errors
        )
        prefix = f"{item}: " if item else ""
        raise ValidationError(f"{prefix}invalid dependencies: {problems}", field_errors=errors)


def site_scope(principal: Principal) -> tuple[str, ...] | None:
    """The sites a listing is limited to; None: all (tasks without a site included)."""
    return None if principal.all_sites else principal.sites


def within_scope(query: Query, site_column: Any, principal: Principal) -> Query:
    """`query` limited to rows whose `site_column` is in the grant (rows without a site
    need all sites, as `Principal.sees_site` says)."""
    sites = site_scope(principal)
    return query if sites is None else query.where(col(site_column).in_(sites))


def check_site_filter(principal: Principal, site: str | None) -> None:
    """A `site` filter naming a site outside the grant: 404, like another site's object."""
    if site is not None and not principal.sees_site(site):
        raise NotFound(f"site {site!r} does not exist", details={"site": site})
