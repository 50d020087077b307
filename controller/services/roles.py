"""Roles, permissions and the principal a request acts as.

The server decides what a role may do from the table below; the dashboard reads
the same table (through `Principal.can`) only to hide what would be refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from tme.topics import name_problem

ALL_SITES = "*"


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    engineer = "engineer"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Permission(StrEnum):
    public = "public"  # no token needed (only /healthz and the login itself)
    authenticated = "authenticated"  # any valid principal (who am I, log out)
    docs_read = "docs.read"
    health_read = "health.read"
    task_read = "task.read"
    fleet_read = "fleet.read"
    task_write = "task.write"  # create, update, delete, report status
    run_control = "run.control"  # cancel, trigger
    schedule_manage = "schedule.manage"
    device_manage = "device.manage"
    limit_manage = "limit.manage"
    user_manage = "user.manage"
    token_manage = "token.manage"
    audit_read = "audit.read"


_VIEWER = {
    Permission.authenticated,
    Permission.docs_read,
    Permission.health_read,
    Permission.task_read,
    Permission.fleet_read,
}
_OPERATOR = _VIEWER | {Permission.task_write, Permission.run_control}
_ENGINEER = _OPERATOR | {
    Permission.schedule_manage,
    Permission.device_manage,
    Permission.limit_manage,
}
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset(_VIEWER),
    Role.operator: frozenset(_OPERATOR),
    Role.engineer: frozenset(_ENGINEER),
    Role.admin: frozenset(set(Permission) - {Permission.public}),
}


def grant_problems(sites: tuple[str, ...]) -> list[str]:
    """Why a new grant's sites cannot be granted: a name no task can target ("plant 1")
    would reach nothing, and hide the typo behind it."""
    return [problem for s in sites if s != ALL_SITES and (problem := name_problem(s))]


def parse_sites(sites: list[str] | str | None) -> tuple[str, ...]:
    """Normalise a grant: "a,b" or ["a", "b"]; "*" (alone) means every site."""
    if sites is None:
        return ()
    items = sites.split(",") if isinstance(sites, str) else sites
    names = tuple(sorted({s.strip() for s in items if s.strip()}))
    return (ALL_SITES,) if ALL_SITES in names else names


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: a user, through a token or a dashboard session."""

    user_id: int
    username: str
    role: Role
    sites: tuple[str, ...]
    token_id: int | None = None
    token_kind: str = "api"

    @property
    def all_sites(self) -> bool:
        return ALL_SITES in self.sites

    def sees_site(self, site: str | None) -> bool:
        """Objects of a site outside the grant are invisible; siteless ones need all sites."""
        if self.all_sites:
            return True
        return site is not None and site in self.sites

    def can(self, permission: Permission | str, site: str | None = None) -> bool:
        """Whether the role allows `permission` (on `site` when given)."""
        if Permission(permission) is Permission.public:
            return True
        if Permission(permission) not in ROLE_PERMISSIONS[self.role]:
            return False
        return site is None or self.sees_site(site)
